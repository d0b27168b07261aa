//! One spelling per `_id` value.
//!
//! The server compares numbers by value, across types: `5`, `5L`, `5.0` and
//! `NumberDecimal("5.00")` are the same `_id` (a second insert of any of
//! them is a duplicate key error, and a filter with one matches a document
//! stored with another). Journal keys, the replicator's pairing of keys with
//! the documents it reads back, and verify's buckets must agree with that,
//! or two spellings of one document become two documents: one of them then
//! looks deleted.
//!
//! The canonical form of a number:
//! - an integer (of any type) that fits an Int32 is an Int32, else one that
//!   fits an Int64 is an Int64;
//! - any other value a double holds exactly is that Double (so
//!   `NumberDecimal("2.50")` is `2.5`), every NaN one NaN, and the
//!   infinities stay infinities;
//! - any other decimal is its Decimal128 with trailing zeros removed
//!   (`1.10` and `1.1` are one value).
//!
//! An embedded document or array is compared value by value too
//! (`{a: 5}` and `{a: 5.0}` are one `_id`): its values take their canonical
//! form, its field names and order stay. Other types are their own
//! canonical form.

use mongodb::bson::{Bson, Decimal128};

/// `id` in its canonical form (see the module documentation).
pub fn canonical_id(id: &Bson) -> Bson {
    match id {
        Bson::Int32(_) => id.clone(),
        Bson::Int64(i) => int(*i),
        Bson::Double(d) => double(*d),
        Bson::Decimal128(d) => decimal(d),
        Bson::Document(d) => Bson::Document(
            d.iter()
                .map(|(k, v)| (k.clone(), canonical_id(v)))
                .collect(),
        ),
        Bson::Array(a) => Bson::Array(a.iter().map(canonical_id).collect()),
        other => other.clone(),
    }
}

fn int(i: i64) -> Bson {
    match i32::try_from(i) {
        Ok(small) => Bson::Int32(small),
        Err(_) => Bson::Int64(i),
    }
}

/// 2^63: integral doubles in [-2^63, 2^63) convert to i64 exactly.
const TWO_63: f64 = 9_223_372_036_854_775_808.0;

fn double(d: f64) -> Bson {
    if d.is_nan() {
        Bson::Double(f64::NAN)
    } else if d.fract() == 0.0 && (-TWO_63..TWO_63).contains(&d) {
        int(d as i64)
    } else {
        Bson::Double(d)
    }
}

/// A finite decimal: `(-1)^negative * coefficient * 10^exponent`.
struct Finite {
    negative: bool,
    coefficient: u128,
    exponent: i32,
}

/// Exponent bias of Decimal128 (IEEE 754-2008, binary integer decimal).
const BIAS: i32 = 6176;
/// The largest coefficient Decimal128 allows (10^34 - 1); larger encodings
/// are non-canonical and mean zero.
const MAX_COEFFICIENT: u128 = 9_999_999_999_999_999_999_999_999_999_999_999;

fn decimal(d: &Decimal128) -> Bson {
    let bytes = d.bytes();
    let low = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let high = u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
    let negative = high >> 63 == 1;
    let finite = if (high >> 61) & 0b11 == 0b11 {
        match (high >> 58) & 0b11111 {
            0b11111 => return Bson::Double(f64::NAN),
            0b11110 => {
                return Bson::Double(if negative {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                })
            }
            // The "large coefficient" form: always above 10^34 - 1, so zero.
            _ => Finite {
                negative,
                coefficient: 0,
                exponent: ((high >> 47) & 0x3fff) as i32 - BIAS,
            },
        }
    } else {
        let coefficient = ((high & ((1 << 49) - 1)) as u128) << 64 | low as u128;
        Finite {
            negative,
            coefficient: if coefficient > MAX_COEFFICIENT {
                0
            } else {
                coefficient
            },
            exponent: ((high >> 49) & 0x3fff) as i32 - BIAS,
        }
    };
    canonical_decimal(finite)
}

fn canonical_decimal(mut f: Finite) -> Bson {
    if f.coefficient == 0 {
        return Bson::Int32(0);
    }
    while f.coefficient.is_multiple_of(10) {
        f.coefficient /= 10;
        f.exponent += 1;
    }
    if let Some(i) = as_i64(&f) {
        return int(i);
    }
    if let Some(d) = as_f64(&f) {
        return Bson::Double(d);
    }
    let high = (f.negative as u64) << 63
        | ((f.exponent + BIAS) as u64) << 49
        | (f.coefficient >> 64) as u64;
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(f.coefficient as u64).to_le_bytes());
    bytes[8..].copy_from_slice(&high.to_le_bytes());
    Bson::Decimal128(Decimal128::from_bytes(bytes))
}

/// The value as an i64, if it is an integer that fits.
fn as_i64(f: &Finite) -> Option<i64> {
    if f.exponent < 0 || f.exponent > 19 {
        return None;
    }
    let magnitude = f.coefficient.checked_mul(10u128.pow(f.exponent as u32))?;
    let magnitude = i128::try_from(magnitude).ok()?;
    i64::try_from(if f.negative { -magnitude } else { magnitude }).ok()
}

/// The value as an f64, if a double holds it exactly (normalized input:
/// the coefficient has no trailing decimal zeros).
fn as_f64(f: &Finite) -> Option<f64> {
    // value = odd * 2^binary_exponent, with odd an odd integer.
    let (odd, binary_exponent) = if f.exponent >= 0 {
        // c * 10^e = odd(c) * 5^e * 2^(tz(c) + e)
        let tz = f.coefficient.trailing_zeros() as i32;
        let five = 5u128.checked_pow(u32::try_from(f.exponent).ok()?)?;
        ((f.coefficient >> tz).checked_mul(five)?, tz + f.exponent)
    } else {
        // c / 10^n is a binary fraction only if 5^n divides c; c < 2^113
        // bounds n by 48.
        let n = -f.exponent;
        let five = 5u128.checked_pow(u32::try_from(n).ok()?)?;
        if !f.coefficient.is_multiple_of(five) {
            return None;
        }
        let q = f.coefficient / five;
        let tz = q.trailing_zeros() as i32;
        (q >> tz, tz - n)
    };
    if odd >= 1 << 53 || !(-1022..=960).contains(&binary_exponent) {
        return None;
    }
    let magnitude = odd as f64 * 2f64.powi(binary_exponent);
    Some(if f.negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Bson {
        Bson::Decimal128(Decimal128::from_str(s).unwrap())
    }

    fn canon(b: Bson) -> Bson {
        canonical_id(&b)
    }

    #[test]
    fn integers_of_every_type_are_one_id() {
        for b in [
            Bson::Int32(5),
            Bson::Int64(5),
            Bson::Double(5.0),
            dec("5"),
            dec("5.00"),
            dec("0.5E1"),
        ] {
            assert_eq!(canon(b.clone()), Bson::Int32(5), "{b:?}");
        }
        assert_eq!(canon(Bson::Double(-0.0)), Bson::Int32(0));
        assert_eq!(canon(dec("-0.000")), Bson::Int32(0));
        assert_eq!(canon(dec("-7")), Bson::Int32(-7));
        let big = 1i64 << 40;
        assert_eq!(canon(Bson::Double(big as f64)), Bson::Int64(big));
        assert_eq!(canon(dec(&big.to_string())), Bson::Int64(big));
        assert_eq!(canon(dec("1E+18")), Bson::Int64(1_000_000_000_000_000_000));
        assert_eq!(canon(Bson::Int64(i64::MIN)), Bson::Int64(i64::MIN));
        assert_eq!(canon(Bson::Double(-TWO_63)), Bson::Int64(i64::MIN));
    }

    #[test]
    fn fractions_a_double_holds_are_that_double() {
        assert_eq!(canon(dec("2.50")), Bson::Double(2.5));
        assert_eq!(canon(dec("-0.125")), Bson::Double(-0.125));
        assert_eq!(canon(Bson::Double(2.5)), Bson::Double(2.5));
        // Integral but beyond i64: the double, from either type.
        assert_eq!(canon(dec("1E+20")), Bson::Double(1e20));
        assert_eq!(canon(Bson::Double(1e20)), Bson::Double(1e20));
        assert_eq!(canon(Bson::Double(TWO_63)), Bson::Double(TWO_63));
    }

    #[test]
    fn other_decimals_are_normalized() {
        // 0.1 is no double: it stays a decimal, without trailing zeros.
        assert_eq!(canon(dec("0.100")), dec("0.1"));
        assert_ne!(canon(dec("0.1")), canon(Bson::Double(0.1)));
        assert_eq!(canon(dec("1.10")), canon(dec("1.1")));
        assert_ne!(canon(dec("1.1")), canon(dec("-1.1")));
        // 2^53 + 1 is an integer of i64, not of f64.
        assert_eq!(
            canon(dec("9007199254740993")),
            Bson::Int64(9007199254740993)
        );
        assert_eq!(
            canon(dec("123456789012345678901234567890120E+9")),
            dec("12345678901234567890123456789012E+10")
        );
    }

    #[test]
    fn nan_and_infinities() {
        let nan = |b: Bson| matches!(b, Bson::Double(d) if d.is_nan());
        assert!(nan(canon(dec("NaN"))));
        assert!(nan(canon(Bson::Double(-f64::NAN))));
        assert_eq!(
            mongodb::bson::to_vec(&mongodb::bson::doc! { "_id": canon(dec("NaN")) }).unwrap(),
            mongodb::bson::to_vec(&mongodb::bson::doc! { "_id": canon(Bson::Double(-f64::NAN)) })
                .unwrap()
        );
        assert_eq!(canon(dec("-Infinity")), Bson::Double(f64::NEG_INFINITY));
        assert_eq!(canon(dec("Infinity")), Bson::Double(f64::INFINITY));
    }

    #[test]
    fn embedded_values_are_canonical_and_field_order_stays() {
        use mongodb::bson::doc;
        assert_eq!(
            canon(Bson::Document(
                doc! { "x": 5.0, "y": [2i64, dec("0.50")], "z": { "n": dec("7") } }
            )),
            Bson::Document(doc! { "x": 5, "y": [2, 0.5], "z": { "n": 7 } })
        );
        // Bson's own == ignores field order; the key bytes do not.
        let key = |b: Bson| crate::capture::key_of("", &b).id;
        assert_ne!(
            key(Bson::Document(doc! { "x": 1, "y": 2 })),
            key(Bson::Document(doc! { "y": 2, "x": 1 }))
        );
        assert_eq!(
            key(Bson::Document(doc! { "x": 1, "y": 2 })),
            key(Bson::Document(doc! { "x": 1.0, "y": 2i64 }))
        );
    }

    #[test]
    fn other_types_are_left_alone() {
        for b in [
            Bson::String("5".into()),
            Bson::ObjectId(mongodb::bson::oid::ObjectId::new()),
            Bson::Boolean(true),
            Bson::Document(mongodb::bson::doc! { "a": "1" }),
        ] {
            assert_eq!(canon(b.clone()), b);
        }
    }
}
