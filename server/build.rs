//! `sqlx::migrate!` embeds the migration files at compile time but, on stable Rust, does not
//! watch their directory, so a newly added migration would not trigger a rebuild.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
