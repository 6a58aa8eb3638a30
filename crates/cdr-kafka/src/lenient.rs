//! A deserializer over a JSON value that lets the target type decide how
//! text is read: environment overrides arrive as text, so a password
//! `123456` or a numeric group id stays a string where the configuration
//! wants a string, while `5000` still fills a number and `true` a bool.
//! TOML numbers and booleans given for a string field become their text.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::{Map, Value};

/// Wraps a configuration tree for typed, text-tolerant deserialisation.
pub struct Lenient(pub Value);

type E = serde_json::Error;

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, E> {
    s.trim()
        .parse()
        .map_err(|_| de::Error::custom(format!("`{s}` is not {what}")))
}

macro_rules! numeric {
    ($($method:ident => $visit:ident : $t:ty, $what:literal;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
                match self.0 {
                    Value::String(s) => visitor.$visit(parse::<$t>(&s, $what)?),
                    other => Lenient(other).deserialize_any(visitor),
                }
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Lenient {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_string(s),
            Value::Array(a) => visitor.visit_seq(Seq(a.into_iter())),
            Value::Object(m) => visitor.visit_map(Obj::new(m)),
        }
    }

    numeric! {
        deserialize_i8 => visit_i8: i8, "an integer";
        deserialize_i16 => visit_i16: i16, "an integer";
        deserialize_i32 => visit_i32: i32, "an integer";
        deserialize_i64 => visit_i64: i64, "an integer";
        deserialize_u8 => visit_u8: u8, "a non-negative integer";
        deserialize_u16 => visit_u16: u16, "a non-negative integer";
        deserialize_u32 => visit_u32: u32, "a non-negative integer";
        deserialize_u64 => visit_u64: u64, "a non-negative integer";
        deserialize_f32 => visit_f32: f32, "a number";
        deserialize_f64 => visit_f64: f64, "a number";
        deserialize_bool => visit_bool: bool, "true or false";
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Number(n) => visitor.visit_string(n.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            other => Lenient(other).deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        self.deserialize_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Lenient(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, E> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            other => de::Deserializer::deserialize_enum(other, name, variants, visitor),
        }
    }

    forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct seq tuple tuple_struct
        map struct identifier ignored_any
    }
}

struct Seq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Seq {
    type Error = E;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, E> {
        self.0
            .next()
            .map(|v| seed.deserialize(Lenient(v)))
            .transpose()
    }
}

struct Obj {
    it: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl Obj {
    fn new(m: Map<String, Value>) -> Self {
        Obj {
            it: m.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Obj {
    type Error = E;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, E> {
        match self.it.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(Value::String(k)).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, E> {
        let v = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value without a key"))?;
        seed.deserialize(Lenient(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct C {
        password: String,
        group: Option<String>,
        port: u16,
        ratio: f64,
        on: bool,
        list: Vec<u32>,
        mode: Mode,
        nested: Option<N>,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Fast,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct N {
        n: i64,
    }

    #[test]
    fn text_fills_what_the_type_asks_for() {
        let v = serde_json::json!({"password": "123456", "group": "42", "port": "9092",
            "ratio": "0.5", "on": "true", "list": ["1", 2], "mode": "fast", "nested": {"n": "-3"}});
        let c = C::deserialize(Lenient(v)).unwrap();
        assert_eq!(c.password, "123456");
        assert_eq!(c.group.as_deref(), Some("42"));
        assert_eq!((c.port, c.ratio, c.on), (9092, 0.5, true));
        assert_eq!(c.list, vec![1, 2]);
        assert_eq!(c.mode, Mode::Fast);
        assert_eq!(c.nested, Some(N { n: -3 }));
        // Numbers and booleans written for a string field are their text.
        let v = serde_json::json!({"password": 123456, "group": true, "port": 1, "ratio": 1,
            "on": false, "list": [], "mode": "fast", "nested": null});
        let c = C::deserialize(Lenient(v)).unwrap();
        assert_eq!(
            (c.password.as_str(), c.group.as_deref()),
            ("123456", Some("true"))
        );
        assert_eq!(c.nested, None);
        // Text that is not what the field needs is an error naming it.
        let v = serde_json::json!({"password": "", "port": "lots", "ratio": 1, "on": true,
            "list": [], "mode": "fast"});
        let e = C::deserialize(Lenient(v)).unwrap_err().to_string();
        assert!(e.contains("`lots` is not a non-negative integer"), "{e}");
        let v = serde_json::json!({"password": "", "port": 1, "ratio": 1, "on": true,
            "list": [], "mode": "fast", "typo": 1});
        assert!(C::deserialize(Lenient(v)).is_err());
    }
}
