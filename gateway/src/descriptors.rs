//! The `baton.v1` descriptor pool as the gateway sees it: proto comments by element, and the
//! `(baton.v1.mcp_tool)` method option that turns an RPC into an MCP tool.

use std::collections::HashMap;

use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};

/// Full name of the method option that marks an RPC as an MCP tool.
pub const MCP_TOOL_OPTION: &str = "baton.v1.mcp_tool";

/// The descriptor set could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DescriptorError {
    #[error("the descriptor set does not decode: {0}")]
    Decode(#[from] prost_reflect::DescriptorError),
    #[error("the descriptor set has no extension {MCP_TOOL_OPTION}")]
    MissingOption,
    #[error("two RPCs claim the MCP tool name {0:?}")]
    DuplicateTool(String),
    #[error("RPC {method} has an invalid MCP tool name {name:?} (letters, digits, _ and - only)")]
    InvalidToolName { method: String, name: String },
}

/// Decodes an encoded `FileDescriptorSet` (with imports and source info).
pub fn decode_pool(bytes: &[u8]) -> Result<DescriptorPool, DescriptorError> {
    Ok(DescriptorPool::decode(bytes)?)
}

/// Leading comments of every documented element, keyed by file name and source path, and the
/// fields whose comment says they are required (looked up on every tool call, by full name,
/// without allocating).
#[derive(Debug, Default)]
pub struct Comments {
    by_location: HashMap<(String, Vec<i32>), String>,
    required: std::collections::HashSet<String>,
}

impl Comments {
    /// Indexes the source info of every file in `pool`.
    pub fn from_pool(pool: &DescriptorPool) -> Self {
        let mut by_location = HashMap::new();
        for file in pool.files() {
            let proto = file.file_descriptor_proto();
            let Some(info) = proto.source_code_info.as_ref() else { continue };
            for location in &info.location {
                let Some(text) = location.leading_comments.as_deref() else { continue };
                let text = clean_comment(text);
                if !text.is_empty() {
                    by_location.insert((file.name().to_owned(), location.path.clone()), text);
                }
            }
        }
        let mut comments = Self { by_location, required: Default::default() };
        for message in pool.all_messages() {
            for field in message.fields() {
                if comments.get(field.parent_file().name(), field.path()).is_some_and(comment_says_required) {
                    comments.required.insert(field.full_name().to_owned());
                }
            }
        }
        comments
    }

    /// Whether the field's comment says it is required.
    pub fn is_required(&self, field: &prost_reflect::FieldDescriptor) -> bool {
        self.required.contains(field.full_name())
    }

    /// The leading comment of the element at `path` in `file`, reflowed into paragraphs.
    pub fn get(&self, file: &str, path: &[i32]) -> Option<&str> {
        self.by_location.get(&(file.to_owned(), path.to_vec())).map(String::as_str)
    }
}

/// Joins the lines of each paragraph of a proto comment with spaces: proto comments are wrapped
/// at the source's line width, which means nothing to a tool description.
fn clean_comment(text: &str) -> String {
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line);
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    paragraphs.join("\n\n")
}

/// True when a field's comment marks it required, e.g. "(required)" or "(required; ...)".
pub fn comment_says_required(comment: &str) -> bool {
    comment.contains("(required)") || comment.contains("(required;") || comment.contains("(required,")
}

/// The `(baton.v1.mcp_tool)` option of one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpToolOption {
    pub name: String,
    pub read_only: bool,
    pub destructive: bool,
    pub aliases: Vec<String>,
}

/// Reads the `(baton.v1.mcp_tool)` option of `method`; `None` when the RPC does not carry it.
pub fn mcp_tool_option(
    pool: &DescriptorPool,
    method: &MethodDescriptor,
) -> Result<Option<McpToolOption>, DescriptorError> {
    let extension = pool.get_extension_by_name(MCP_TOOL_OPTION).ok_or(DescriptorError::MissingOption)?;
    let options = method.options();
    if !options.has_extension(&extension) {
        return Ok(None);
    }
    let value = options.get_extension(&extension);
    let Some(message) = value.as_message() else { return Ok(None) };
    let option = McpToolOption {
        name: string_field(message, "name"),
        read_only: bool_field(message, "read_only"),
        destructive: bool_field(message, "destructive"),
        aliases: message
            .get_field_by_name("aliases")
            .and_then(|v| v.as_list().map(|l| l.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()))
            .unwrap_or_default(),
    };
    for name in std::iter::once(&option.name).chain(&option.aliases) {
        if !valid_tool_name(name) {
            return Err(DescriptorError::InvalidToolName { method: method.full_name().to_owned(), name: name.clone() });
        }
    }
    Ok(Some(option))
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    message.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn bool_field(message: &DynamicMessage, name: &str) -> bool {
    message.get_field_by_name(name).and_then(|v| match v.as_ref() {
        Value::Bool(b) => Some(*b),
        _ => None,
    }) == Some(true)
}

/// MCP tool names: 1 to 128 characters of ASCII letters, digits, `_`, `-` and `.`.
fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_reflowed_into_paragraphs() {
        assert_eq!(
            clean_comment(" Streams a session's entries\n and more.\n\n Second.\n"),
            "Streams a session's entries and more.\n\nSecond."
        );
    }

    #[test]
    fn required_marker() {
        assert!(comment_says_required("The agent creating the session; it becomes the owner (required)."));
        assert!(comment_says_required("The agent writing the entry (required; letters, digits)."));
        assert!(comment_says_required("The agent to receive it (required, different from from_agent)."));
        assert!(!comment_says_required("The entry's content: text or bytes (one is required; at most 1 MiB)."));
        assert!(!comment_says_required("Key of the session."));
    }

    #[test]
    fn every_tool_rpc_carries_the_option() {
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        let service = pool.get_service_by_name("baton.v1.ContextService").unwrap();
        let create = service.methods().find(|m| m.name() == "CreateSession").unwrap();
        let option = mcp_tool_option(&pool, &create).unwrap().unwrap();
        assert_eq!(option.name, "register_session");
        assert!(!option.read_only);
        let close = service.methods().find(|m| m.name() == "CloseSession").unwrap();
        assert!(mcp_tool_option(&pool, &close).unwrap().unwrap().destructive);
        let handoffs = pool.get_service_by_name("baton.v1.HandoffService").unwrap();
        let watch = handoffs.methods().find(|m| m.name() == "WatchHandoffs").unwrap();
        assert_eq!(mcp_tool_option(&pool, &watch).unwrap(), None);
    }
}
