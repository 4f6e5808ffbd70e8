//! Job metadata: a JSON object, given as JSON text (or as the object itself), within a size
//! limit. The browser checks what the user types with the same rules the server applies.
use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata is not valid JSON: {0}")]
    NotJson(String),
    #[error("metadata must be a JSON object such as {{\"source\": \"curl\"}}")]
    NotAnObject,
    #[error("metadata exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
}

/// No metadata: `{}`.
pub fn empty_metadata() -> Value {
    Value::Object(Map::new())
}

/// Parses JSON text holding an object; blank text means no metadata.
pub fn parse_metadata(text: &str, limit: usize) -> Result<Value, MetadataError> {
    if text.len() > limit {
        return Err(MetadataError::TooLarge { limit });
    }
    if text.trim().is_empty() {
        return Ok(empty_metadata());
    }
    let value: Value =
        serde_json::from_str(text).map_err(|error| MetadataError::NotJson(error.to_string()))?;
    check_metadata(value, limit)
}

/// Accepts a value that is an object within the limit (as serialized).
pub fn check_metadata(value: Value, limit: usize) -> Result<Value, MetadataError> {
    if !value.is_object() {
        return Err(MetadataError::NotAnObject);
    }
    if value.to_string().len() > limit {
        return Err(MetadataError::TooLarge { limit });
    }
    Ok(value)
}

/// What is wrong with metadata text, checked as the page's field is typed. The server renders
/// with `parse_metadata` itself; the browser checks the same rules without building a `Value`
/// (the only difference: the server also measures the object re-serialized, which can exceed
/// the text's own length only for numbers such as `1e2`, and refuses numbers beyond `f64`).
pub fn metadata_problem(text: &str, limit: usize) -> Option<MetadataError> {
    #[cfg(feature = "ssr")]
    {
        parse_metadata(text, limit).err()
    }
    #[cfg(not(feature = "ssr"))]
    {
        if text.len() > limit {
            return Some(MetadataError::TooLarge { limit });
        }
        if text.trim().is_empty() {
            return None;
        }
        if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            return Some(MetadataError::NotJson(error.to_string()));
        }
        // Valid JSON text is an object exactly when it starts with `{`.
        (!text.trim_start().starts_with('{')).then_some(MetadataError::NotAnObject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_objects_and_blank_text_only() {
        assert_eq!(parse_metadata(" ", 10), Ok(empty_metadata()));
        assert_eq!(parse_metadata(r#"{"a":1}"#, 100).unwrap()["a"], 1);
        assert_eq!(parse_metadata("[1]", 100), Err(MetadataError::NotAnObject));
        assert!(matches!(
            parse_metadata("{", 100),
            Err(MetadataError::NotJson(_))
        ));
        assert_eq!(
            parse_metadata(r#"{"a":"0123456789"}"#, 5),
            Err(MetadataError::TooLarge { limit: 5 })
        );
    }
}
