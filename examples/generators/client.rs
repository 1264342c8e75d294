//! The seed's Generators client, in Rust: a generator is a `Stream` of its items.
//!
//! Start the server (see easyrpc.toml beside this file), then from the project root:
//!   cargo run -p easyrpc-tests --example generators_client            # or pass the URL:
//!   cargo run -p easyrpc-tests --example generators_client -- ws://127.0.0.1:8220/ws/easy
use easyrpc::client::EasyRpcProxy;
use easyrpc::value::Value;
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:8220/ws/easy".to_owned());
    let private = EasyRpcProxy::connect(&url, "abcd1234", "private").await?;
    let work: Vec<Value> = vec![1.into(), 2.into(), "a".into(), "b".into(), 3.into(), 4.into()];
    let mut items = private.stream("private_generator", vec![Value::List(work)], vec![]).await?;
    while let Some(item) = items.next().await {
        println!("stream {}", item?);
    }
    drop(items);
    private.close().await;
    Ok(())
}
