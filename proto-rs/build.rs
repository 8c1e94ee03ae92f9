//! Compiles `proto/baton/v1/*.proto` with protox (pure Rust, no system `protoc`), generates
//! prost messages and tonic clients and servers, and writes the encoded descriptor set that
//! server reflection and the MCP gateway read.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let files = ["baton/v1/common.proto", "baton/v1/options.proto", "baton/v1/context.proto", "baton/v1/handoff.proto"];
    let fds = protox::Compiler::new([&root])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(files)?
        .file_descriptor_set();

    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("baton_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;

    println!("cargo:rerun-if-changed={}", root.display());
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    Ok(())
}
