//! Reading a JSON:API page once, keeping only what the connector reads.
//!
//! A configuration page is mostly attributes the connector never looks at (dates, notes,
//! names of related records). Building a full `serde_json::Value` of it allocates every key
//! and every string of every record, then frees them all. [`read_pruned`] instead reads the
//! document against a [`Shape`] naming the keys that matter: those become a `Value` exactly as
//! `serde_json` would build it, and everything else is checked for well-formed JSON and
//! skipped without being kept. The reading functions in `jsonapi` run unchanged on the
//! result, which is what makes the two readings agree (`fuzz::pruned_pages_read_as_whole_ones`).
//!
//! Where a value is not the object or list its shape expects (an id that is an object, a
//! `data` that is text), it is kept whole, so the messages that quote or describe it stay the
//! same.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// What to keep of a value.
pub enum Shape {
    /// The whole value.
    All,
    /// An object's listed keys, each with its own shape; its other keys are skipped.
    Object(&'static [(&'static str, Shape)]),
    /// A list whose every item has this shape.
    List(&'static Shape),
}

/// Reads `body` as one JSON document, keeping what `shape` names. The whole body must be
/// well-formed JSON, as `serde_json::from_slice` requires.
pub fn read_pruned(body: &[u8], shape: &Shape) -> Result<Value, serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let value = Pruned(shape).deserialize(&mut reader)?;
    reader.end()?;
    Ok(value)
}

/// The seed reading one value against its shape.
struct Pruned<'s>(&'s Shape);

impl<'de> DeserializeSeed<'de> for Pruned<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<Value, D::Error> {
        match self.0 {
            Shape::All => serde::Deserialize::deserialize(reader),
            shape => reader.deserialize_any(PrunedVisitor(shape)),
        }
    }
}

/// Builds scalars as `serde_json::Value` does, and containers as the shape says.
struct PrunedVisitor<'s>(&'s Shape);

impl<'de> Visitor<'de> for PrunedVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, reader: D) -> Result<Value, D::Error> {
        Pruned(self.0).deserialize(reader)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let item_shape = match self.0 {
            Shape::List(item) => item,
            // Not the object the shape expects: kept whole.
            _ => &Shape::All,
        };
        let mut list = Vec::with_capacity(items.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = items.next_element_seed(Pruned(item_shape))? {
            list.push(item);
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        match self.0 {
            Shape::Object(keys) => {
                while let Some(key) = entries.next_key_seed(KeyOf(keys))? {
                    match key {
                        Some(index) => {
                            let (name, shape) = &keys[index];
                            object.insert(
                                (*name).to_string(),
                                entries.next_value_seed(Pruned(shape))?,
                            );
                        }
                        None => {
                            entries.next_value::<IgnoredAny>()?;
                        }
                    }
                }
            }
            // Not the list the shape expects: kept whole.
            _ => {
                while let Some((key, value)) = entries.next_entry::<String, Value>()? {
                    object.insert(key, value);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// Reads an object's key without keeping it: which of the wanted keys it is, if any.
struct KeyOf(&'static [(&'static str, Shape)]);

impl<'de> DeserializeSeed<'de> for KeyOf {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<Option<usize>, D::Error> {
        reader.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyOf {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|(name, _)| *name == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape::Object(&[
        ("id", Shape::All),
        (
            "data",
            Shape::List(&Shape::Object(&[("name", Shape::All), ("id", Shape::All)])),
        ),
    ]);

    #[test]
    fn only_the_named_keys_are_kept_and_the_rest_is_still_checked() {
        let body = br#"{"id": {"deep": [1, 2]}, "notes": "x", "data": [
            {"name": "A", "created": "2024", "id": 1},
            "text",
            {"name": null, "id": 1.5e3, "extra": {"a": [true]}}
        ], "id2": 3}"#;
        let value = read_pruned(body, &SHAPE).expect("well-formed");
        assert_eq!(
            value,
            serde_json::json!({"id": {"deep": [1, 2]}, "data": [
                {"name": "A", "id": 1}, "text", {"name": null, "id": 1500.0}
            ]})
        );
        // Skipped parts are still read as JSON: a broken one fails the whole document.
        assert!(read_pruned(br#"{"notes": [1, }"#, &SHAPE).is_err());
        assert!(read_pruned(br#"{"id": 1} trailing"#, &SHAPE).is_err());
        let truncated = read_pruned(br#"{"data": [{"name": "A""#, &SHAPE);
        assert!(truncated.is_err_and(|e| e.is_eof()));
    }

    #[test]
    fn what_is_skipped_is_not_converted() {
        // A number out of range and text that is not UTF-8 fail a whole reading, but not a
        // pruned one when they lie where nothing is kept.
        let body = b"{\"huge\": 1e400, \"latin1\": \"caf\xe9\", \"id\": 7}";
        assert!(serde_json::from_slice::<Value>(body).is_err());
        assert_eq!(
            read_pruned(body, &SHAPE).expect("the kept part reads"),
            serde_json::json!({"id": 7})
        );
        // Nor are nesting deeper than serde_json's 128 levels and a lone surrogate escape.
        let deep = format!(
            "{{\"notes\": {}{}, \"id\": 7}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let lone = br#"{"notes": "\ud800", "id": 7}"#;
        for body in [deep.as_bytes(), lone.as_slice()] {
            assert!(serde_json::from_slice::<Value>(body).is_err());
            assert_eq!(
                read_pruned(body, &SHAPE).expect("the kept part reads"),
                serde_json::json!({"id": 7})
            );
        }
        // Where a value is kept, it is read as serde_json reads it.
        assert!(read_pruned(b"{\"id\": 1e400}", &SHAPE).is_err());
        assert!(read_pruned(br#"{"id": "\ud800"}"#, &SHAPE).is_err());
        let deep_id = format!("{{\"id\": {}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(read_pruned(deep_id.as_bytes(), &SHAPE).is_err());
    }

    #[test]
    fn a_value_of_another_shape_is_kept_whole() {
        let body = br#"{"data": {"name": "A", "other": [1]}, "id": [{"x": 1}]}"#;
        let value = read_pruned(body, &SHAPE).expect("well-formed");
        assert_eq!(
            value,
            serde_json::json!({"data": {"name": "A", "other": [1]}, "id": [{"x": 1}]})
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_as_serde_json_does() {
        let body = br#"{"id": 1, "id": 2}"#;
        let whole: Value = serde_json::from_slice(body).expect("well-formed");
        assert_eq!(read_pruned(body, &SHAPE).expect("well-formed"), whole);
    }
}
