//! Token amounts as people write them ("12.5" INF) and as the protocol counts them (base
//! units, 18 decimals). Parsing is exact: more decimals than the token has, or an amount
//! beyond the protocol's uint128 range, is an error rather than a rounding.

use infhub_core::Amount;

/// Decimals of the INF token (ERC-20 `decimals()`; checked against the chain at registration).
pub const TOKEN_DECIMALS: u32 = 18;

/// Why an amount could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AmountError {
    /// Not a decimal number.
    #[error("`{0}` is not an amount; write it like 12.5")]
    NotANumber(String),
    /// More fractional digits than the token has.
    #[error("`{0}` has more than {TOKEN_DECIMALS} decimals")]
    TooPrecise(String),
    /// Beyond the protocol's range.
    #[error("`{0}` is too large")]
    TooLarge(String),
    /// Zero where a payment needs a positive amount.
    #[error("the amount must be greater than zero")]
    Zero,
}

/// Reads "12.5" as base units (12.5 × 10^18). Zero is refused.
pub fn parse_inf(text: &str) -> Result<Amount, AmountError> {
    let t = text.trim().replace('_', "");
    let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(AmountError::NotANumber(text.into()));
    }
    if frac.len() > TOKEN_DECIMALS as usize {
        return Err(AmountError::TooPrecise(text.into()));
    }
    let too_large = || AmountError::TooLarge(text.into());
    let scale = 10u128.pow(TOKEN_DECIMALS);
    let whole_units: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_large())? };
    let frac_units: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u128>().map_err(|_| too_large())? * 10u128.pow(TOKEN_DECIMALS - frac.len() as u32)
    };
    let total = whole_units.checked_mul(scale).and_then(|w| w.checked_add(frac_units)).ok_or_else(too_large)?;
    if total == 0 {
        return Err(AmountError::Zero);
    }
    Ok(Amount(total))
}

/// Writes base units as INF without trailing zeros: 12500000000000000000 → "12.5".
pub fn format_inf(units: u128) -> String {
    let scale = 10u128.pow(TOKEN_DECIMALS);
    let (whole, frac) = (units / scale, units % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}", width = TOKEN_DECIMALS as usize);
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_exactly() {
        assert_eq!(parse_inf("12.5"), Ok(Amount(12_500_000_000_000_000_000)));
        assert_eq!(parse_inf("0.000000000000000001"), Ok(Amount(1)));
        assert_eq!(parse_inf(".5"), Ok(Amount(500_000_000_000_000_000)));
        assert_eq!(parse_inf("1_000"), Ok(Amount(1_000 * 10u128.pow(18))));
        for s in ["12.5", "0.000000000000000001", "1000", "340282366920938463463.374607431768211455"] {
            assert_eq!(format_inf(parse_inf(s).expect(s).0), s);
        }
    }

    #[test]
    fn refuses_what_it_cannot_represent() {
        assert_eq!(parse_inf("0"), Err(AmountError::Zero));
        assert!(matches!(parse_inf("1.0000000000000000001"), Err(AmountError::TooPrecise(_))));
        assert!(matches!(parse_inf("340282366920938463464"), Err(AmountError::TooLarge(_))));
        for bad in ["", ".", "-1", "1e18", "abc", "1.2.3", "0x10"] {
            assert!(matches!(parse_inf(bad), Err(AmountError::NotANumber(_))), "{bad}");
        }
    }
}
