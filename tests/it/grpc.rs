//! A real gRPC service and client (tonic, prost messages written by hand instead of generated):
//! unary and server-streaming calls through a split and a mirror, over h2c on both sides;
//! statuses counted, trailers intact, the copy reaching the shadow.

use std::convert::Infallible;
use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::harness::{Ports, Runoff};

#[derive(Clone, PartialEq, prost::Message)]
struct Ask {
    #[prost(int32, tag = "1")]
    n: i32,
    #[prost(string, tag = "2")]
    who: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Answer {
    #[prost(int32, tag = "1")]
    n: i32,
    #[prost(string, tag = "2")]
    from: String,
}

type Codec = tonic_prost::ProstCodec<Answer, Ask>;

#[derive(Clone)]
struct Unary(String);

impl tonic::server::UnaryService<Ask> for Unary {
    type Response = Answer;
    type Future = std::future::Ready<Result<Response<Answer>, Status>>;
    fn call(&mut self, req: Request<Ask>) -> Self::Future {
        let ask = req.into_inner();
        std::future::ready(if ask.n < 0 {
            Err(Status::not_found(format!("no {}", ask.n)))
        } else {
            Ok(Response::new(Answer {
                n: ask.n * 2,
                from: self.0.clone(),
            }))
        })
    }
}

#[derive(Clone)]
struct Count(String);

type AnswerStream = Pin<Box<dyn Stream<Item = Result<Answer, Status>> + Send>>;

impl tonic::server::ServerStreamingService<Ask> for Count {
    type Response = Answer;
    type ResponseStream = AnswerStream;
    type Future = std::future::Ready<Result<Response<AnswerStream>, Status>>;
    fn call(&mut self, req: Request<Ask>) -> Self::Future {
        let n = req.into_inner().n;
        let from = self.0.clone();
        let items: Vec<Result<Answer, Status>> = (1..=n)
            .map(|i| {
                Ok(Answer {
                    n: i,
                    from: from.clone(),
                })
            })
            .collect();
        std::future::ready(Ok(Response::new(
            Box::pin(tokio_stream::iter(items)) as AnswerStream
        )))
    }
}

/// A gRPC service `runoff.test.Echo` (`Double`: unary, NOT_FOUND for a negative number;
/// `Count`: server streaming) named `name`, on h2c; how many calls it served.
struct Service {
    addr: std::net::SocketAddr,
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn service(name: &str) -> Service {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (name, counted) = (name.to_string(), calls.clone());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (name, counted) = (name.clone(), counted.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (name, counted) = (name.clone(), counted.clone());
                        async move {
                            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let mut grpc = tonic::server::Grpc::new(Codec::default());
                            let resp = match req.uri().path() {
                                "/runoff.test.Echo/Double" => grpc.unary(Unary(name), req).await,
                                "/runoff.test.Echo/Count" => {
                                    grpc.server_streaming(Count(name), req).await
                                }
                                _ => Status::unimplemented("no such method").into_http(),
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
            });
        }
    });
    Service { addr, calls, task }
}

async fn client(runoff: &Runoff) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(runoff.url(""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

async fn double(
    c: &mut tonic::client::Grpc<tonic::transport::Channel>,
    n: i32,
) -> Result<Answer, Status> {
    c.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/runoff.test.Echo/Double");
    c.unary(
        Request::new(Ask {
            n,
            who: "test".into(),
        }),
        path,
        tonic_prost::ProstCodec::<Ask, Answer>::default(),
    )
    .await
    .map(Response::into_inner)
}

async fn count(c: &mut tonic::client::Grpc<tonic::transport::Channel>, n: i32) -> Vec<Answer> {
    c.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/runoff.test.Echo/Count");
    let mut stream = c
        .server_streaming(
            Request::new(Ask {
                n,
                who: "test".into(),
            }),
            path,
            tonic_prost::ProstCodec::<Ask, Answer>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut all = Vec::new();
    while let Some(a) = stream.message().await.unwrap() {
        all.push(a);
    }
    // The trailers arrived intact: tonic read the OK status from them to end the stream.
    all
}

fn config(p: &Ports, routes: &str, backends: &[(&str, std::net::SocketAddr)]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(n, a)| format!("  {n}: {{ address: \"{a}\", protocol: h2c }}"))
        .collect();
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n{}\nroutes:\n{routes}",
        p.listen,
        p.admin,
        list.join("\n")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_calls_pass_through_a_split_with_their_statuses_counted() {
    let node = service("node").await;
    let go = service("go").await;
    let (n, g) = (node.addr, go.addr);
    let runoff = Runoff::start(|p| {
        config(
            p,
            "  - name: rpc\n    split: { node: 50, go: 50 }\n",
            &[("node", n), ("go", g)],
        )
    })
    .await;
    let mut c = client(&runoff).await;
    let mut served = std::collections::HashMap::<String, u32>::new();
    for i in 0..40 {
        let a = double(&mut c, i).await.unwrap();
        assert_eq!(a.n, i * 2);
        *served.entry(a.from).or_default() += 1;
    }
    assert!(served.len() == 2, "both backends served: {served:?}");
    let err = double(&mut c, -1).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (tonic::Code::NotFound, "no -1")
    );
    let items = count(&mut c, 5).await;
    assert_eq!(
        items.iter().map(|a| a.n).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );

    let m = runoff
        .expect_metric("runoff_requests_total", &[("route", "rpc")], 42.0)
        .await;
    assert_eq!(m.sum("runoff_grpc_requests_total", &[("code", "OK")]), 41.0);
    assert_eq!(
        m.sum("runoff_grpc_requests_total", &[("code", "NOT_FOUND")]),
        1.0
    );
    for (name, svc) in [("node", &node), ("go", &go)] {
        assert_eq!(
            m.sum("runoff_grpc_requests_total", &[("backend", name)]),
            svc.calls.load(std::sync::atomic::Ordering::SeqCst) as f64,
            "{name} counted exactly"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_calls_are_mirrored_and_compared_by_grpc_status() {
    let node = service("node").await;
    let go = service("go").await;
    let (n, g) = (node.addr, go.addr);
    let runoff = Runoff::start(|p| {
        config(
            p,
            "  - name: rpc\n    split: { node: 1 }\n    mirror: { to: go, methods: [POST] }\n    compare: {}\n",
            &[("node", n), ("go", g)],
        )
    })
    .await;
    let mut c = client(&runoff).await;
    for i in 0..10 {
        assert_eq!(double(&mut c, i).await.unwrap().from, "node");
    }
    assert_eq!(count(&mut c, 3).await.len(), 3);
    let m = runoff
        .expect_metric("runoff_compare_total", &[], 11.0)
        .await;
    // The answers differ in their `from` field only, and message bytes are not compared
    // for gRPC unless asked: every pair matches on its grpc-status.
    assert_eq!(m.sum("runoff_compare_total", &[("result", "match")]), 11.0);
    assert_eq!(go.calls.load(std::sync::atomic::Ordering::SeqCst), 11);
    assert_eq!(
        m.sum(
            "runoff_grpc_requests_total",
            &[("role", "shadow"), ("code", "OK")]
        ),
        11.0
    );
}
