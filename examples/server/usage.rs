//! What the server prints at start: where it listens, its quotas and callers, freshly minted demo
//! tokens, and `curl` commands to try.

use std::net::SocketAddr;

use api_policy::stack::StackConfig;

use crate::cli::{Cli, DEMO_WEBHOOK_SECRET};
use crate::mint_token::{self, Role, Tier, TokenSpec};

/// Freshly minted tokens for the start-up hints, named as the shell variables the hints use.
pub struct DemoToken {
    var: &'static str,
    sub: &'static str,
    role: Role,
    tier: Tier,
    token: String,
}

/// How long the printed tokens last.
const DEMO_TOKEN_TTL_SECS: u64 = 3600;

/// Tokens for the start-up hints, signed with the configured HS256 secret; none when the
/// configuration verifies keys from elsewhere (their signing keys are the issuer's).
pub fn demo_tokens(
    config: &StackConfig,
) -> Result<Vec<DemoToken>, Box<dyn std::error::Error + Send + Sync>> {
    let Some(jwt) = &config.jwt else {
        return Ok(Vec::new());
    };
    let secret = match (&jwt.hs256_secret, &jwt.hs256_secret_env) {
        (Some(secret), _) => secret.clone(),
        (None, Some(var)) => std::env::var(var)?,
        (None, None) => return Ok(Vec::new()),
    };
    let issuer = jwt.issuer.first().map_or("", String::as_str);
    let audience = jwt.audience.first().map_or("", String::as_str);
    [
        ("PATIENT", "pat_1", Role::Patient, Tier::Free),
        ("DOCTOR", "prv_1", Role::Doctor, Tier::Pro),
        ("ADMIN", "admin_1", Role::Admin, Tier::Pro),
    ]
    .into_iter()
    .map(|(var, sub, role, tier)| {
        let token = mint_token::mint(&TokenSpec {
            secret: &secret,
            issuer,
            audience,
            sub,
            role,
            tier,
            scope: None,
            ttl_secs: DEMO_TOKEN_TTL_SECS,
        })?;
        Ok(DemoToken {
            var,
            sub,
            role,
            tier,
            token,
        })
    })
    .collect()
}

pub fn print_usage(
    addr: SocketAddr,
    cli: &Cli,
    config: &StackConfig,
    store: &str,
    tokens: &[DemoToken],
) {
    let base = format!("http://{addr}");
    let json = "-H 'Content-Type: application/json'";
    let origin = cli
        .config
        .as_ref()
        .map_or("built in".to_string(), |p| p.display().to_string());
    println!("appointments API listening on {base} (policies: {origin}; state store: {store})");
    let mut booking = "?".to_string();
    if let Some(limits) = &config.rate_limit {
        let tiers: Vec<String> = limits
            .tiers
            .iter()
            .map(|(tier, quota)| format!("{tier} {quota}"))
            .collect();
        let routes: Vec<String> = limits
            .routes
            .iter()
            .filter_map(|r| Some(format!("{} {}", r.route, r.limit.as_ref()?)))
            .collect();
        if let Some(limit) = limits
            .routes
            .iter()
            .find(|r| r.name.as_deref() == Some("booking"))
            .and_then(|r| r.limit.clone())
        {
            booking = limit;
        }
        println!(
            "quotas: {}; per caller on {}",
            tiers.join(", "),
            routes.join(", ")
        );
    }
    let clients: Vec<String> = config
        .callers
        .api_keys
        .iter()
        .filter_map(|k| {
            let tier = k.tier.as_deref().unwrap_or("default tier");
            Some(format!("{} ({tier})", k.key.as_ref()?))
        })
        .collect();
    if let (Some(header), false) = (&config.callers.api_key_header, clients.is_empty()) {
        println!("service clients: {header}: {}", clients.join(", "));
    }
    if let Some(jwt) = &config.jwt {
        println!(
            "tokens: iss {}, aud {}",
            jwt.issuer.join(" or "),
            jwt.audience.join(" or ")
        );
    }
    if tokens.is_empty() {
        let url = cli.jwks_url.as_deref().unwrap_or("the configured JWKS");
        println!(
            "tokens: verified with the keys at {url}; set PATIENT (sub pat_1, role patient) and DOCTOR (role doctor) to tokens from that issuer"
        );
    } else {
        let published = config
            .jwt
            .as_ref()
            .and_then(|jwt| jwt.hs256_secret.as_deref())
            == Some(mint_token::DEV_SECRET);
        if published {
            println!(
                "tokens: HS256 with the published development secret; pass --jwt-secret beyond a local try-out"
            );
        }
        println!(
            "tokens valid for {} min (paste into your shell):",
            DEMO_TOKEN_TTL_SECS / 60
        );
        for t in tokens {
            println!(
                "  {}={}    # sub {}, role {}, tier {}",
                t.var,
                t.token,
                t.sub,
                t.role.as_str(),
                t.tier.as_str()
            );
        }
        println!(
            "more (add --secret/--issuer/--audience if you changed the server's): \
             cargo run -q --example mint_token --features jwt -- --role patient --sub pat_2"
        );
    }
    // Shell variables, set from the lines above, keep the commands short.
    let patient = "-H \"Authorization: Bearer $PATIENT\"";
    let doctor = "-H \"Authorization: Bearer $DOCTOR\"";
    println!("try:");
    println!("  curl -i {base}/health");
    println!(
        "  curl -i {base}/api/v1/appointments/apt_1    # v1: Deprecation, Sunset and Link headers"
    );
    println!(
        "  curl -i -H 'Api-Version: 2024-04-10' {base}/api/v2/appointments/apt_1    # a dated v2 revision"
    );
    println!(
        "  curl -s -H \"Authorization: Bearer $ADMIN\" {base}/admin/deprecations    # who still calls v1"
    );
    println!(
        "  curl -i {base}/api/v2/appointments/apt_2    # ETag and Cache-Control; send the ETag back:"
    );
    println!(
        "  curl -i -H 'If-None-Match: \"<etag>\"' {base}/api/v2/appointments/apt_2    # 304, no body"
    );
    println!(
        "  curl -i -X PUT -H 'If-Match: \"<etag>\"' {json} -d '{{\"status\":\"confirmed\"}}' {base}/api/v2/appointments/apt_2    # 200 with the new ETag; 428 without If-Match, 412 once stale"
    );
    println!("  curl -i {patient} {base}/api/v2/patients/pat_1    # 200: their own record");
    println!("  curl -i {patient} {base}/api/v2/patients/pat_2    # 403: someone else's");
    println!(
        "  curl -i {doctor} {base}/api/v2/patients/pat_2     # 200: doctors read every record"
    );
    println!("  curl -i {base}/api/v2/patients/pat_1    # 401: no token");
    println!(
        "  curl -i -H 'X-Api-Key: demo-free-key' {base}/api/v2/appointments/apt_1    # a service client"
    );
    println!(
        "  curl -i -X POST {base}/api/v2/appointments {patient} {json} -H 'Idempotency-Key: booking-1' \
         -d '{{\"slot_id\":\"slot_2026_12_02_1000\",\"patient_id\":\"pat_1\",\"reason\":\"Annual check-up\"}}'    \
         # 201; run it again: the same 201, replayed (Idempotent-Replayed: true), nothing booked twice"
    );
    println!(
        "  (booking needs an Idempotency-Key: 400 without; the same key with another body is 422)"
    );
    println!(
        "  for i in $(seq 1 7); do curl -s -o /dev/null -w '%{{http_code}}\\n' -X POST {base}/api/v2/appointments \
         {doctor} {json} -H \"Idempotency-Key: loop-$i\" \
         -d '{{\"slot_id\":\"slot_2026_12_03_1100\",\"patient_id\":\"pat_2\",\"reason\":\"Follow-up\"}}'; done    \
         # 201, then 409 (slot taken) until the booking limit ({booking} per caller) answers 429"
    );
    // A Stripe delivery, signed in the shell as Stripe signs: HMAC-SHA256 over "{t}.{body}".
    // A secret given on the command line is not printed: the command reads it from a variable.
    let secret = if cli.stripe_webhook_secret == DEMO_WEBHOOK_SECRET {
        println!(
            "webhook: the published demo signing secret; pass --stripe-webhook-secret beyond a local try-out"
        );
        shell_quote(DEMO_WEBHOOK_SECRET)
    } else {
        println!("webhook: set STRIPE_WEBHOOK_SECRET to the --stripe-webhook-secret given");
        "\"$STRIPE_WEBHOOK_SECRET\"".to_string()
    };
    let payload = r#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","metadata":{"appointment_id":"apt_1"}}}}"#;
    println!(
        "  payload={payload}; t=$(date +%s); \
         sig=$(printf '%s' \"$t.$payload\" | openssl dgst -sha256 -hmac {secret} | sed 's/^.* //'); \
         curl -i -X POST {base}/webhooks/stripe -H \"Stripe-Signature: t=$t,v1=$sig\" {json} -d \"$payload\"    \
         # 200, apt_1 paid (GET /api/v2/appointments/apt_1 shows it); again: replayed, evt_1 is handled once",
        payload = shell_quote(payload)
    );
}

/// `s` as one bash word, in single quotes.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
