//! [`JwtConfig`]: JWT bearer authentication as a configuration file states it.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Algorithm, JwtAuthBuilder, JwtAuthLayer, Require, VerifyKey};
use crate::error::ConfigError;
use crate::route::checked;

/// The `[jwt]` section of a [`StackConfig`](crate::stack::StackConfig). Secrets do not belong in
/// a file operators pass around: an HMAC secret is read from the environment variable that
/// `hs256_secret_env` names (`hs256_secret` inline is for local try-outs), public keys from PEM
/// files, or keys from a JWKS URL or OIDC discovery (feature `jwks`).
///
/// ```toml
/// [jwt]
/// issuer = ["https://auth.example.com/"]
/// audience = ["appointments-api"]
/// hs256_secret_env = "JWT_SECRET"
/// optional = true
/// [[jwt.routes]]
/// route = "/api/v2/patients/*"
/// any_role = ["patient", "doctor"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JwtConfig {
    /// The trusted issuers (`iss`).
    #[serde(default)]
    pub issuer: Vec<String>,
    /// This API's audiences (`aud`).
    #[serde(default)]
    pub audience: Vec<String>,
    /// The environment variable holding an HS256 secret (at least 32 bytes).
    pub hs256_secret_env: Option<String>,
    /// An HS256 secret written inline: for local try-outs only.
    pub hs256_secret: Option<String>,
    /// Public keys in PEM files.
    #[serde(default)]
    pub pem_keys: Vec<PemKeyConfig>,
    /// A JWKS document's URL (feature `jwks`).
    pub jwks_url: Option<String>,
    /// An OIDC issuer whose discovery document names the JWKS (feature `jwks`).
    pub oidc_issuer: Option<String>,
    /// Let requests without a token through as anonymous (routes may still require one).
    #[serde(default)]
    pub optional: bool,
    /// The realm of `WWW-Authenticate` challenges.
    pub realm: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 0).
    pub leeway_secs: Option<u64>,
    /// The longest token lifetime accepted (`exp - iat`), in seconds.
    pub max_lifetime_secs: Option<u64>,
    /// What each route requires, first match wins.
    #[serde(default)]
    pub routes: Vec<RequireConfig>,
}

/// A `[[jwt.pem_keys]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PemKeyConfig {
    /// The PEM file of the public key.
    pub path: std::path::PathBuf,
    /// The one algorithm the key verifies: `RS256`, `PS256`, `ES256`, `ES384`, `EdDSA`, ...
    pub algorithm: String,
    /// The `kid` tokens name it by.
    pub kid: Option<String>,
}

/// A `[[jwt.routes]]` entry: a token, and all of `scopes` and one of `any_role`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RequireConfig {
    /// The route pattern.
    pub route: String,
    /// Scopes the token must all hold.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Roles of which the token must hold one.
    #[serde(default)]
    pub any_role: Vec<String>,
    /// Let anonymous requests through on this route (a token sent is still verified).
    #[serde(default)]
    pub anonymous: bool,
}

impl JwtConfig {
    /// A builder with this configuration's keys, claims checks and routes, for further settings
    /// (a revocation store, typed claims) before [`JwtAuthBuilder::build`]. A JWKS is not
    /// fetched here: the layer fetches it when the first token needs it.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry under `jwt`: a secret's variable unset or too short, a
    /// PEM file unreadable, an unknown algorithm, a JWKS without the `jwks` feature.
    pub fn builder(&self) -> Result<JwtAuthBuilder, ConfigError> {
        if self.hs256_secret_env.is_none()
            && self.hs256_secret.is_none()
            && self.pem_keys.is_empty()
            && self.jwks_url.is_none()
            && self.oidc_issuer.is_none()
        {
            return Err(ConfigError::new(
                "jwt",
                "no keys: set hs256_secret_env (or hs256_secret), pem_keys, jwks_url or oidc_issuer",
            ));
        }
        if self.issuer.is_empty() && self.oidc_issuer.is_none() {
            return Err(ConfigError::new(
                "jwt.issuer",
                "name the issuers (iss) whose tokens are trusted",
            ));
        }
        if self.audience.is_empty() {
            return Err(ConfigError::new(
                "jwt.audience",
                "name this API's audiences (aud)",
            ));
        }
        let mut builder = JwtAuthLayer::builder();
        if !self.issuer.is_empty() {
            builder = builder.issuer(&self.issuer);
        }
        if !self.audience.is_empty() {
            builder = builder.audience(&self.audience);
        }
        if let Some(var) = &self.hs256_secret_env {
            let secret = std::env::var(var).map_err(|_| {
                ConfigError::new(
                    "jwt.hs256_secret_env",
                    format!("the environment variable `{var}` is not set (or not UTF-8)"),
                )
            })?;
            let key = VerifyKey::hmac(Algorithm::HS256, secret)
                .map_err(|e| e.at("jwt.hs256_secret_env"))?;
            builder = builder.key(key);
        }
        if let Some(secret) = &self.hs256_secret {
            let key =
                VerifyKey::hmac(Algorithm::HS256, secret).map_err(|e| e.at("jwt.hs256_secret"))?;
            builder = builder.key(key);
        }
        for (i, pem) in self.pem_keys.iter().enumerate() {
            builder = builder.key(pem.key(&format!("jwt.pem_keys[{i}]"))?);
        }
        builder = self.jwks(builder)?;
        if self.optional {
            builder = builder.optional();
        }
        if let Some(realm) = &self.realm {
            builder = builder.realm(realm.as_str());
        }
        if let Some(secs) = self.leeway_secs {
            builder = builder.leeway(Duration::from_secs(secs));
        }
        if let Some(secs) = self.max_lifetime_secs {
            builder = builder.max_lifetime(Duration::from_secs(secs));
        }
        for (i, route) in self.routes.iter().enumerate() {
            let field = format!("jwt.routes[{i}]");
            checked(&route.route, format!("{field}.route"))?;
            if route.anonymous && !(route.scopes.is_empty() && route.any_role.is_empty()) {
                return Err(ConfigError::new(
                    field,
                    "`anonymous = true` lets callers without a token in: drop `scopes` and `any_role`, or `anonymous`",
                ));
            }
            builder = builder.route(&route.route, route.require());
        }
        Ok(builder)
    }

    /// The layer.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry under `jwt`.
    pub fn build(&self) -> Result<JwtAuthLayer, ConfigError> {
        self.builder()?.build().map_err(|e| e.under("jwt"))
    }

    #[cfg(feature = "jwks")]
    fn jwks(&self, builder: JwtAuthBuilder) -> Result<JwtAuthBuilder, ConfigError> {
        let jwks = match (&self.jwks_url, &self.oidc_issuer) {
            (None, None) => return Ok(builder),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "jwt.jwks_url",
                    "give `jwks_url` or `oidc_issuer`, not both",
                ));
            }
            (Some(url), None) => super::Jwks::from_url(url.as_str())
                .build()
                .map_err(|e| e.at("jwt.jwks_url"))?,
            (None, Some(issuer)) => super::Jwks::discover(issuer.as_str())
                .build()
                .map_err(|e| e.at("jwt.oidc_issuer"))?,
        };
        Ok(builder.jwks(jwks))
    }

    #[cfg(not(feature = "jwks"))]
    fn jwks(&self, builder: JwtAuthBuilder) -> Result<JwtAuthBuilder, ConfigError> {
        let field = match (&self.jwks_url, &self.oidc_issuer) {
            (None, None) => return Ok(builder),
            (Some(_), _) => "jwt.jwks_url",
            (None, Some(_)) => "jwt.oidc_issuer",
        };
        Err(ConfigError::new(
            field,
            "keys from a JWKS need api-policy's `jwks` feature",
        ))
    }
}

impl PemKeyConfig {
    fn key(&self, field: &str) -> Result<VerifyKey, ConfigError> {
        let algorithm = Algorithm::from_str(&self.algorithm).map_err(|_| {
            ConfigError::new(
                format!("{field}.algorithm"),
                format!("`{}` is not a JWS algorithm", self.algorithm),
            )
        })?;
        let pem = std::fs::read(&self.path).map_err(|e| {
            ConfigError::new(
                format!("{field}.path"),
                format!("cannot read {}: {e}", self.path.display()),
            )
        })?;
        let key = match algorithm {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => VerifyKey::rsa_pem(algorithm, pem),
            Algorithm::ES256 | Algorithm::ES384 => VerifyKey::ec_pem(algorithm, pem),
            Algorithm::EdDSA => VerifyKey::ed_pem(pem),
            _ => Err(ConfigError::new(
                "algorithm",
                "an HMAC secret is not a PEM key: use hs256_secret_env",
            )),
        }
        .map_err(|e| {
            let entry = if e.field == "algorithm" {
                "algorithm"
            } else {
                "path"
            };
            e.at(format!("{field}.{entry}"))
        })?;
        Ok(match &self.kid {
            Some(kid) => key.with_kid(kid.as_str()),
            None => key,
        })
    }
}

impl RequireConfig {
    fn require(&self) -> Require {
        if self.anonymous {
            return Require::nothing();
        }
        let mut require = Require::token();
        if !self.scopes.is_empty() {
            require = require.and_scopes(self.scopes.iter().map(String::as_str));
        }
        if !self.any_role.is_empty() {
            require = require.and_any_role(self.any_role.iter().map(String::as_str));
        }
        require
    }
}
