//! The tool catalog: every RPC carrying `(baton.v1.mcp_tool)` in the descriptor set becomes an
//! MCP tool, with its input schema from the request message, its output schema from the
//! response message, its description from the proto comments and its hints from the option.
//! Nothing here names a particular RPC, so a new RPC with the option is a new tool.

use std::collections::HashMap;
use std::sync::Arc;

use prost_reflect::{DescriptorPool, MessageDescriptor, MethodDescriptor};
use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{Map, Value as Json, json};

use crate::compat;
use crate::descriptors::{Comments, DescriptorError, McpToolOption, decode_pool, mcp_tool_option};
use crate::schema::{Direction, SchemaBuilder};

/// Items a stream tool collects when the caller does not say.
pub const DEFAULT_MAX_ITEMS: u32 = 200;
/// The most items a stream tool collects in one call.
pub const MAX_ITEMS_CAP: u32 = 1000;

/// How a tool's RPC is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallShape {
    Unary,
    /// Server streaming: the tool collects a bounded number of items.
    ServerStreaming,
}

/// One tool and the RPC behind it.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub option: McpToolOption,
    pub method: MethodDescriptor,
    pub shape: CallShape,
    /// For stream tools: the gateway-only argument that bounds the items collected.
    pub max_items_arg: Option<String>,
    /// For stream tools: the key of the collected items in the result.
    pub items_key: Option<String>,
    pub tool: Tool,
}

/// Every tool the gateway serves, built once from the descriptor set.
#[derive(Debug)]
pub struct Catalog {
    pool: DescriptorPool,
    comments: Comments,
    tools: Vec<ToolSpec>,
    by_name: HashMap<String, usize>,
}

impl Catalog {
    /// Builds the catalog from an encoded `FileDescriptorSet` with source info.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Self, DescriptorError> {
        let pool = decode_pool(bytes)?;
        let comments = Comments::from_pool(&pool);
        let mut tools = Vec::new();
        let mut by_name = HashMap::new();
        for service in pool.services() {
            for method in service.methods() {
                let Some(option) = mcp_tool_option(&pool, &method)? else { continue };
                let shape = match (method.is_client_streaming(), method.is_server_streaming()) {
                    (false, false) => CallShape::Unary,
                    (false, true) => CallShape::ServerStreaming,
                    _ => {
                        tracing::warn!(
                            method = method.full_name(),
                            "client-streaming RPCs cannot be MCP tools; skipped"
                        );
                        continue;
                    }
                };
                let spec = build_tool(&comments, option, method, shape);
                let index = tools.len();
                for name in std::iter::once(&spec.option.name).chain(&spec.option.aliases) {
                    if by_name.insert(name.clone(), index).is_some() {
                        return Err(DescriptorError::DuplicateTool(name.clone()));
                    }
                }
                tools.push(spec);
            }
        }
        Ok(Self { pool, comments, tools, by_name })
    }

    /// The catalog of `baton_proto::FILE_DESCRIPTOR_SET`.
    pub fn baton() -> Result<Arc<Self>, DescriptorError> {
        Self::from_descriptor_set(baton_proto::FILE_DESCRIPTOR_SET).map(Arc::new)
    }

    pub fn tools(&self) -> &[ToolSpec] {
        &self.tools
    }

    /// The tool called `name` (its option name or one of its aliases).
    pub fn tool(&self, name: &str) -> Option<&ToolSpec> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// The tool served by the RPC `full_name` (e.g. `baton.v1.ContextService.GetSession`).
    pub fn tool_for_method(&self, full_name: &str) -> Option<&ToolSpec> {
        self.tools.iter().find(|t| t.method.full_name() == full_name)
    }

    pub fn comments(&self) -> &Comments {
        &self.comments
    }

    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }
}

fn build_tool(comments: &Comments, option: McpToolOption, method: MethodDescriptor, shape: CallShape) -> ToolSpec {
    let input = method.input();
    let output = method.output();
    let mut input_schema = SchemaBuilder::new(comments, Direction::Input).message(&input);
    let item_schema = SchemaBuilder::new(comments, Direction::Output).message(&output);

    let mut description = comments.get(method.parent_file().name(), method.path()).unwrap_or_default().to_owned();
    let (output_schema, max_items_arg, items_key) = match shape {
        CallShape::Unary => (item_schema, None, None),
        CallShape::ServerStreaming => {
            let arg = gateway_arg_name(&input, "max_items");
            let key = plural_key(&output);
            let properties = input_schema.entry("properties").or_insert_with(|| json!({}));
            properties[&arg] = json!({
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_ITEMS_CAP,
                "default": DEFAULT_MAX_ITEMS,
                "description": format!(
                    "Gateway option: stop after this many items (default {DEFAULT_MAX_ITEMS}, at most {MAX_ITEMS_CAP})."
                ),
            });
            description.push_str(&format!(
                "\n\nThis RPC streams; the tool collects the items into `{key}` and returns when the stream ends, \
                 after `{arg}` items (default {DEFAULT_MAX_ITEMS}, at most {MAX_ITEMS_CAP}), or when the call's \
                 deadline passes (a live stream then returns what arrived until then; `stopped` says which). \
                 It reports MCP progress per item when the request carries a progress token."
            ));
            (stream_output_schema(&key, item_schema), Some(arg), Some(key))
        }
    };
    let aliases = compat::accepted_aliases(&input);
    if !aliases.is_empty() {
        description.push_str(&format!(
            "\n\nAlso accepts the argument names of the earlier AI handoff MCP server: {}.",
            aliases.join(", ")
        ));
    }
    if !option.aliases.is_empty() {
        description.push_str(&format!("\n\nAlso answers to the tool names: {}.", option.aliases.join(", ")));
    }

    let annotations = ToolAnnotations::with_title(title(&option.name))
        .read_only(option.read_only)
        .destructive(!option.read_only && option.destructive)
        .open_world(false);
    let tool = Tool::new(option.name.clone(), description, Arc::new(input_schema))
        .with_raw_output_schema(Arc::new(output_schema))
        .with_title(title(&option.name))
        .with_annotations(annotations);
    ToolSpec { option, method, shape, max_items_arg, items_key, tool }
}

fn stream_output_schema(key: &str, item: Map<String, Json>) -> Map<String, Json> {
    let schema = json!({
        "type": "object",
        "properties": {
            key: {"type": "array", "items": item},
            "count": {"type": "integer", "description": "How many items were collected."},
            "stopped": {
                "type": "string",
                "enum": ["end", "max_items", "deadline"],
                "description": "Why collection stopped: the stream ended, the item limit was reached, or the deadline passed."
            }
        }
    });
    let Json::Object(map) = schema else { unreachable!("an object literal") };
    map
}

/// A gateway-only argument name that does not clash with the request's own fields.
fn gateway_arg_name(input: &MessageDescriptor, wanted: &str) -> String {
    let mut name = wanted.to_owned();
    while input.get_field_by_name(&name).is_some() || input.get_field_by_json_name(&name).is_some() {
        name.insert(0, '_');
    }
    name
}

/// `Entry` -> `entries`, `HandoffEvent` -> `handoff_events`.
fn plural_key(desc: &MessageDescriptor) -> String {
    let mut snake = String::new();
    for (i, c) in desc.name().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    if let Some(stem) = snake.strip_suffix('y').filter(|s| !s.ends_with(['a', 'e', 'i', 'o', 'u'])) {
        format!("{stem}ies")
    } else if snake.ends_with('s') || snake.ends_with('x') || snake.ends_with("ch") || snake.ends_with("sh") {
        format!("{snake}es")
    } else {
        format!("{snake}s")
    }
}

/// `register_session` -> `Register session`.
fn title(name: &str) -> String {
    let words = name.replace(['_', '-'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_match_the_api() {
        let catalog = Catalog::baton().unwrap();
        let mut names: Vec<&str> = catalog.tools().iter().map(|t| t.option.name.as_str()).collect();
        names.sort_unstable();
        let mut expected = vec![
            "register_session",
            "get_session",
            "list_sessions",
            "update_session",
            "close_session",
            "update_context",
            "get_context",
            "list_entries",
            "search_context",
            "stream_entries",
            "request_handoff",
            "get_handoff",
            "list_handoffs",
            "accept_handoff",
            "reject_handoff",
            "complete_handoff",
            "cancel_handoff",
            "stream_handoff_context",
            "delete_session",
            "fork_session",
            "redact_entries",
            "compact_session",
        ];
        expected.sort_unstable();
        assert_eq!(names, expected);
    }

    #[test]
    fn hints_and_descriptions() {
        let catalog = Catalog::baton().unwrap();
        let get = catalog.tool("get_context").unwrap();
        assert_eq!(get.shape, CallShape::Unary);
        assert_eq!(get.tool.annotations.as_ref().unwrap().read_only_hint, Some(true));
        assert!(get.tool.description.as_deref().unwrap().starts_with("Returns the newest entries"));
        let close = catalog.tool("close_session").unwrap();
        assert_eq!(close.tool.annotations.as_ref().unwrap().destructive_hint, Some(true));
        let register = catalog.tool("register_session").unwrap();
        let hints = register.tool.annotations.as_ref().unwrap();
        assert_eq!((hints.read_only_hint, hints.destructive_hint), (Some(false), Some(false)));
        assert!(register.tool.description.as_deref().unwrap().contains("agentFrom"));
        assert_eq!(register.tool.output_schema.as_ref().unwrap()["properties"]["session_key"]["type"], "string");
    }

    #[test]
    fn stream_tools() {
        let catalog = Catalog::baton().unwrap();
        let stream = catalog.tool("stream_entries").unwrap();
        assert_eq!(stream.shape, CallShape::ServerStreaming);
        assert_eq!(stream.max_items_arg.as_deref(), Some("max_items"));
        assert_eq!(stream.items_key.as_deref(), Some("entries"));
        assert_eq!(stream.tool.input_schema["properties"]["max_items"]["maximum"], MAX_ITEMS_CAP);
        let out = stream.tool.output_schema.as_ref().unwrap();
        assert_eq!(out["properties"]["entries"]["items"]["properties"]["seq"]["type"], json!(["string", "integer"]));
        assert!(catalog.tool("stream_handoff_context").is_some());
        assert!(catalog.tool_for_method("baton.v1.HandoffService.WatchHandoffs").is_none());
    }

    #[test]
    fn names() {
        assert_eq!(title("register_session"), "Register session");
        let pool = decode_pool(baton_proto::FILE_DESCRIPTOR_SET).unwrap();
        assert_eq!(plural_key(&pool.get_message_by_name("baton.v1.Entry").unwrap()), "entries");
        assert_eq!(plural_key(&pool.get_message_by_name("baton.v1.HandoffEvent").unwrap()), "handoff_events");
        assert_eq!(plural_key(&pool.get_message_by_name("baton.v1.SearchHit").unwrap()), "search_hits");
    }
}
