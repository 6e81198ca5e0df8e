//! Resource quantities (`500m`, `1.5`, `128Mi`, `1G`, `2e3`) as integers: CPU in
//! millicores, everything else in units (bytes, counts), rounded up as Kubernetes does.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
)]
pub struct QuantityError(pub String);

fn split(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// The quantity times `scale` (1000 for millis), rounded up.
fn scaled(text: &str, scale: f64) -> Result<i64, QuantityError> {
    let error = || QuantityError(text.to_owned());
    let text = text.trim();
    let (number, suffix) = split(text);
    let value: f64 = number.parse().map_err(|_| error())?;
    let multiplier = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| error())?;
            10f64.powi(power)
        }
        _ => return Err(error()),
    };
    let result = (value * multiplier * scale).ceil();
    if !result.is_finite() || result.abs() > 9.2e18 {
        return Err(error());
    }
    Ok(result as i64)
}

pub fn millis(text: &str) -> Result<i64, QuantityError> {
    scaled(text, 1000.0)
}

pub fn units(text: &str) -> Result<i64, QuantityError> {
    scaled(text, 1.0)
}

/// A quantity as JSON carries it (a string, or a bare number).
pub fn from_json(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(millis("500m").unwrap(), 500);
        assert_eq!(millis("1.5").unwrap(), 1500);
        assert_eq!(millis("2").unwrap(), 2000);
        assert_eq!(units("128Mi").unwrap(), 128 * 1024 * 1024);
        assert_eq!(units("1G").unwrap(), 1_000_000_000);
        assert_eq!(units("2e3").unwrap(), 2000);
        assert_eq!(units("1k").unwrap(), 1000);
        assert!(units("12 apples").is_err());
        assert!(units("").is_err());
        assert!(units("1e999").is_err());
    }
}
