//! Test support: checks that an enum's wire spelling is written once, so
//! that serde (JSON bodies) and strum (`as_str`, `parse`, `VARIANTS`, the
//! database columns) can never disagree about a variant.

use std::fmt::{Debug, Display};
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::Serialize;
use strum::{IntoEnumIterator, VariantNames};

/// For every variant, in order: strum's static string, `Display`,
/// `VARIANTS` and serde's JSON string agree, and strum parses it back.
pub(crate) fn assert_one_spelling<E>()
where
    E: IntoEnumIterator + VariantNames + Serialize + FromStr + Into<&'static str> + Display + Copy + PartialEq + Debug,
{
    let variants: Vec<E> = E::iter().collect();
    assert_eq!(variants.len(), E::VARIANTS.len(), "{}", std::any::type_name::<E>());
    for (v, listed) in variants.into_iter().zip(E::VARIANTS) {
        let wire: &'static str = v.into();
        assert_eq!(wire, *listed, "{v:?}");
        assert_eq!(v.to_string(), wire, "{v:?}");
        let json = serde_json::to_value(v).expect("a unit variant serialises");
        assert_eq!(json, serde_json::Value::String(wire.to_owned()), "{v:?}");
        assert_eq!(wire.parse::<E>().ok(), Some(v), "{v:?}");
    }
}

/// [`assert_one_spelling`], and serde reads every spelling back too.
pub(crate) fn assert_one_spelling_both_ways<E>()
where
    E: IntoEnumIterator
        + VariantNames
        + Serialize
        + DeserializeOwned
        + FromStr
        + Into<&'static str>
        + Display
        + Copy
        + PartialEq
        + Debug,
{
    assert_one_spelling::<E>();
    for v in E::iter() {
        let wire: &'static str = v.into();
        let back: E = serde_json::from_value(serde_json::Value::String(wire.to_owned())).expect("serde reads it back");
        assert_eq!(back, v);
    }
}
