//! Object metadata the server owns: uids, timestamps, resourceVersions, and the name rules
//! (DNS subdomains and labels) every object is checked against.
use rand::RngCore;
use serde_json::{Map, Value};

pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Seconds since the epoch for an RFC 3339 timestamp (None if it does not parse).
pub fn parse_time(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|time| time.as_second())
}

pub fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A random (version 4) UUID.
pub fn new_uid() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Five random lower-case alphanumerics, as generateName appends.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 5];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|byte| ALPHABET[*byte as usize % ALPHABET.len()] as char)
        .collect()
}

fn label_problem(label: &str) -> Option<String> {
    if label.is_empty() || label.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let bytes = label.as_bytes();
    let edge_ok = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    if !bytes.iter().all(|&byte| edge_ok(byte) || byte == b'-')
        || !edge_ok(bytes[0])
        || !edge_ok(bytes[bytes.len() - 1])
    {
        return Some("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into());
    }
    None
}

/// Why `name` is not a DNS-1123 label (namespaces, services), if it is not.
pub fn dns_label_problem(name: &str) -> Option<String> {
    label_problem(name)
}

/// Why `name` is not a DNS-1123 subdomain (most objects), if it is not.
pub fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if name.split('.').any(|label| label_problem(label).is_some()) {
        return Some("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into());
    }
    None
}

pub fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

/// The object's metadata, created if missing (callers have checked it is an object).
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = Value::Object(Map::new());
    }
    match object.get_mut("metadata") {
        Some(Value::Object(metadata)) => metadata,
        _ => unreachable!("metadata was just made an object"),
    }
}

pub fn str_field<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

pub fn name(object: &Value) -> &str {
    str_field(object, "/metadata/name").unwrap_or("")
}

pub fn namespace(object: &Value) -> Option<&str> {
    str_field(object, "/metadata/namespace").filter(|namespace| !namespace.is_empty())
}

pub fn uid(object: &Value) -> &str {
    str_field(object, "/metadata/uid").unwrap_or("")
}

pub fn resource_version(object: &Value) -> Option<u64> {
    str_field(object, "/metadata/resourceVersion").and_then(|text| text.parse().ok())
}

pub fn set_resource_version(object: &mut Value, revision: u64) {
    if object.is_object() {
        metadata_mut(object).insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|value| value.as_str().map(str::to_owned))
        .collect()
}

pub fn is_deleting(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|value| !value.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_rules() {
        assert_eq!(dns_subdomain_problem("web-1.example"), None);
        assert!(dns_subdomain_problem("Web").is_some());
        assert!(dns_subdomain_problem("-web").is_some());
        assert!(dns_subdomain_problem("").is_some());
        assert!(dns_label_problem("a.b").is_some());
        assert!(dns_label_problem(&"a".repeat(64)).is_some());
        assert_eq!(dns_label_problem("kube-system"), None);
    }

    #[test]
    fn uids_are_version_4_uuids() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert_ne!(uid, new_uid());
        assert_eq!(random_suffix().len(), 5);
    }

    #[test]
    fn timestamps_round_trip() {
        let text = now();
        assert!(text.ends_with('Z'));
        assert!((parse_time(&text).unwrap() - now_seconds()).abs() < 5);
    }
}
