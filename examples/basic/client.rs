//! The seed's Basic Usage client, in Rust.
//!
//! Start the server (see easyrpc.toml beside this file), then from the project root:
//!   cargo run -p easyrpc-tests --example basic_client            # or pass the URL:
//!   cargo run -p easyrpc-tests --example basic_client -- ws://127.0.0.1:8090/ws/server_a
use easyrpc::client::EasyRpcProxy;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:8090/ws/server_a".to_owned());
    let proxy = EasyRpcProxy::connect(&url, "abcd1234", "public").await?;
    let result = proxy.call("good_func_a", vec![1.into(), 5.into(), 7.into()], vec![]).await?;
    println!("{result}");
    proxy.close().await; // a close frame: the host logs a client leaving, not a reset
    Ok(())
}
