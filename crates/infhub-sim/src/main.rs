//! `infhub-sim`: runs the deterministic simulation for one seed or a range of seeds.

fn main() {
    std::process::exit(infhub_sim::cli::main());
}
