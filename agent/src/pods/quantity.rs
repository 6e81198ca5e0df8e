//! Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `2e3`) parsed exactly, as
//! millis (CPU) or bytes (memory); malformed ones are errors naming the text.

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{0:?} is not a quantity (a number with an optional suffix such as m, Ki, Mi, G, e3)")]
    Malformed(String),
    #[error("{0:?} is out of range")]
    OutOfRange(String),
    #[error("{0:?} is negative")]
    Negative(String),
}

/// A quantity scaled to an integer: `value × 10^exp10 × 2^exp2`, kept exact as a fraction.
struct Parsed {
    /// Digits without the decimal point.
    mantissa: u128,
    /// Power of ten applied to the mantissa (negative for decimals and `m`).
    exp10: i32,
    /// Power of two (binary suffixes).
    exp2: u32,
}

fn parse(text: &str) -> Result<Parsed, QuantityError> {
    let malformed = || QuantityError::Malformed(text.to_owned());
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(QuantityError::Negative(text.to_owned()));
    }
    let unsigned = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(malformed());
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{whole}{fraction}");
    let mantissa: u128 = digits
        .parse()
        .map_err(|_| QuantityError::OutOfRange(text.to_owned()))?;
    let mut exp10 = -(fraction.len() as i32);
    let mut exp2 = 0;
    match suffix {
        "" => {}
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| malformed())?;
            if power.abs() > 30 {
                return Err(QuantityError::OutOfRange(text.to_owned()));
            }
            exp10 += power;
        }
        _ => return Err(malformed()),
    }
    Ok(Parsed {
        mantissa,
        exp10,
        exp2,
    })
}

/// `text × 10^scale`, rounded up (Kubernetes rounds quantities up to the unit it uses).
fn scaled(text: &str, scale: i32) -> Result<u64, QuantityError> {
    let out_of_range = || QuantityError::OutOfRange(text.to_owned());
    let parsed = parse(text)?;
    let exp10 = parsed.exp10 + scale;
    let mut value = parsed
        .mantissa
        .checked_shl(parsed.exp2)
        .ok_or_else(out_of_range)?;
    if parsed.exp2 > 0 && value >> parsed.exp2 != parsed.mantissa {
        return Err(out_of_range());
    }
    if exp10 >= 0 {
        value = value
            .checked_mul(10u128.checked_pow(exp10 as u32).ok_or_else(out_of_range)?)
            .ok_or_else(out_of_range)?;
    } else {
        let divisor = 10u128
            .checked_pow((-exp10) as u32)
            .ok_or_else(out_of_range)?;
        value = value.div_ceil(divisor);
    }
    u64::try_from(value).map_err(|_| out_of_range())
}

/// A CPU quantity in millicores (`500m` → 500, `1.5` → 1500).
pub fn millicores(text: &str) -> Result<u64, QuantityError> {
    scaled(text, 3)
}

/// A memory (or storage) quantity in bytes (`128Mi` → 134217728, `1G` → 10^9).
pub fn bytes(text: &str) -> Result<u64, QuantityError> {
    scaled(text, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_millicores() {
        assert_eq!(millicores("500m"), Ok(500));
        assert_eq!(millicores("1"), Ok(1000));
        assert_eq!(millicores("1.5"), Ok(1500));
        assert_eq!(millicores("0.1"), Ok(100));
        assert_eq!(millicores("2e3"), Ok(2_000_000));
        assert_eq!(millicores("0.0001"), Ok(1), "rounded up to the unit");
        assert_eq!(millicores("+250m"), Ok(250));
    }

    #[test]
    fn memory_quantities_in_bytes() {
        assert_eq!(bytes("128Mi"), Ok(128 << 20));
        assert_eq!(bytes("1Gi"), Ok(1 << 30));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("1.5Ki"), Ok(1536));
        assert_eq!(bytes("64k"), Ok(64_000));
        assert_eq!(bytes("100"), Ok(100));
        assert_eq!(bytes("1e6"), Ok(1_000_000));
    }

    #[test]
    fn malformed_quantities_are_named() {
        for bad in ["", "abc", "1.2.3", "12Q", "Mi", "1e", "."] {
            let err = bytes(bad).unwrap_err();
            assert!(matches!(err, QuantityError::Malformed(_)), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(matches!(bytes("-1Mi"), Err(QuantityError::Negative(_))));
        assert!(matches!(
            bytes("99999999999Ei"),
            Err(QuantityError::OutOfRange(_))
        ));
        assert!(matches!(bytes("1e99"), Err(QuantityError::OutOfRange(_))));
    }
}
