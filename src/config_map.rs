//! [`ConfigMap`]: the map for what a configuration names.

/// A map keyed by what the configuration names (tiers, API versions, API keys): looked up on
/// every request, never inserted into by a client. A seeded fast hasher is safe there, where
/// SipHash's resistance to chosen keys would buy nothing and cost a slower hash per request.
pub(crate) type ConfigMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
