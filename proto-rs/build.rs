//! Compiles `proto/baton/v1/*.proto` with protox (pure Rust, no system `protoc`), generates
//! prost messages and tonic clients and servers, and writes the encoded descriptor set that
//! server reflection and the MCP gateway read.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let files = ["baton/v1/common.proto", "baton/v1/options.proto", "baton/v1/context.proto", "baton/v1/handoff.proto"];
    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true).open_files(files)?;
    let fds = compiler.file_descriptor_set();

    // `encode_file_descriptor_set` keeps custom options such as `(baton.v1.mcp_tool)`, which the
    // MCP gateway reads; encoding the prost-types set above would drop them.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("baton_descriptor.bin"), compiler.encode_file_descriptor_set())?;

    // Our codec: tonic-prost's with smaller per-call buffers (`src/codec.rs`).
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::ProstCodec")
        .compile_fds(fds.clone())?;

    // The server again, alone, with `GetContextWindow` answering the hand-written
    // `encoded::ContextWindowResponse` (entries kept encoded), `ListEntries` answering
    // `encoded::EntryPage` (entries encoded straight from the records), `StreamEntries` streaming
    // `encoded::WireEntry`, and every other type from `v1`.
    let encoded = out.join("encoded");
    fs::create_dir_all(&encoded)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .codec_path("crate::codec::ProstCodec")
        .extern_path(".baton.v1", "crate::v1")
        .extern_path(".baton.v1.GetContextWindowResponse", "crate::encoded::ContextWindowResponse")
        .extern_path(".baton.v1.ListEntriesResponse", "crate::encoded::EntryPage")
        // Only `StreamEntries` answers with a bare `Entry` in this service.
        .extern_path(".baton.v1.Entry", "crate::encoded::WireEntry")
        .out_dir(&encoded)
        .compile_fds(fds)?;

    println!("cargo:rerun-if-changed={}", root.display());
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    Ok(())
}
