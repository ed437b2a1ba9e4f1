//! Rebuilds when a migration is added or changed: `sqlx::migrate!` embeds the files at
//! compile time and would otherwise miss a new one.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
