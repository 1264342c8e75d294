//! The seed's multiple-namespaces client, in Rust.
//!
//! Start the server (see easyrpc.toml beside this file), then from the project root:
//!   cargo run -p easyrpc-tests --example namespaces_client            # or pass the URL:
//!   cargo run -p easyrpc-tests --example namespaces_client -- ws://127.0.0.1:8220/ws/easy
use easyrpc::client::EasyRpcProxy;
use easyrpc::value::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:8220/ws/easy".to_owned());
    let easy_proxy = EasyRpcProxy::connect(&url, "abcd1234", "private").await?;

    let result = easy_proxy.call("private_function", vec![1.into(), 5.into(), 7.into()], vec![]).await?;
    println!("{result}");

    let keyword = vec![("keyword".to_owned(), Value::from("value"))];
    let result = easy_proxy.call("open_function", vec![1.into()], keyword).await?;
    println!("{result}");

    for function in easy_proxy.functions().iter() {
        println!("{function}");
    }
    easy_proxy.close().await;
    Ok(())
}
