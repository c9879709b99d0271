//! A small OTLP trace sink: a stand-in for Jaeger where none runs (the native lab, the tests).
//!
//! It receives spans over OTLP/gRPC (`TraceService/Export`) and OTLP/HTTP with protobuf bodies
//! (`POST /v1/traces`), keeps the last 10,000 traces in memory, and answers the one query of
//! Jaeger's HTTP API the lab uses, `GET /api/traces/{traceID}`, in Jaeger's JSON shape (plus
//! `GET /api/services`). It is not a trace store: no search, no persistence.

mod jaeger;
mod store;

use std::{
    io,
    net::{SocketAddr, TcpListener},
    sync::{Arc, mpsc},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, web};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use prost::Message;

pub use store::{SinkSpan, Store};

/// gRPC side: every export lands in the store.
struct Grpc(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

async fn http_export(store: web::Data<Store>, body: web::Bytes) -> HttpResponse {
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            store.add(request, "http");
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .body(ExportTraceServiceResponse { partial_success: None }.encode_to_vec())
        }
        Err(e) => HttpResponse::BadRequest().body(format!("not an OTLP ExportTraceServiceRequest: {e}")),
    }
}

async fn get_trace(store: web::Data<Store>, id: web::Path<String>) -> HttpResponse {
    let spans = store.trace(&id);
    if spans.is_empty() {
        return HttpResponse::NotFound().json(jaeger::not_found());
    }
    HttpResponse::Ok().json(jaeger::trace(&id, &spans))
}

async fn services(store: web::Data<Store>) -> HttpResponse {
    let names = store.services();
    HttpResponse::Ok().json(serde_json::json!({"data": names, "total": names.len(), "errors": null}))
}

/// Runs the sink on already-bound listeners until the actix system stops.
async fn serve(store: Arc<Store>, grpc: TcpListener, http: Vec<TcpListener>) -> io::Result<actix_web::dev::Server> {
    grpc.set_nonblocking(true)?;
    let grpc = tokio::net::TcpListener::from_std(grpc)?;
    let service = TraceServiceServer::new(Grpc(store.clone()));
    actix_web::rt::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
        if let Err(e) = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await {
            eprintln!("otlp-sink: gRPC server stopped: {e}");
        }
    });
    let data = web::Data::from(store);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(64 << 20))
            .route("/v1/traces", web::post().to(http_export))
            .route("/api/traces/{id}", web::get().to(get_trace))
            .route("/api/services", web::get().to(services))
    })
    .workers(1)
    .disable_signals();
    for listener in http {
        server = server.listen(listener)?;
    }
    Ok(server.run())
}

/// Runs the sink in the foreground (the `otlp-sink` binary) until SIGINT or SIGTERM.
pub async fn run(grpc: SocketAddr, http: Vec<SocketAddr>) -> io::Result<()> {
    let store = Arc::new(Store::default());
    let http_listeners = http.iter().map(TcpListener::bind).collect::<io::Result<Vec<_>>>()?;
    let server = serve(store, TcpListener::bind(grpc)?, http_listeners).await?;
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        handle.stop(true).await;
    });
    #[cfg(unix)]
    {
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                term.recv().await;
                handle.stop(true).await;
            }
        });
    }
    eprintln!(
        "otlp-sink listening: OTLP/gRPC on {grpc}, OTLP/HTTP and the Jaeger query API on {}",
        http.iter().map(|a| format!("http://{a}")).collect::<Vec<_>>().join(", ")
    );
    server.await
}

/// A sink on its own thread, for tests: OTLP/gRPC and OTLP/HTTP on two free loopback ports.
#[derive(Debug)]
pub struct OtlpSink {
    /// Where OTLP/gRPC exports go (`http://ADDR`).
    pub grpc_addr: SocketAddr,
    /// Where OTLP/HTTP exports (`/v1/traces`) and Jaeger queries go.
    pub http_addr: SocketAddr,
    store: Arc<Store>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl OtlpSink {
    /// Starts a sink on two free ports of 127.0.0.1.
    ///
    /// # Panics
    ///
    /// If the ports cannot be bound or the thread cannot start.
    pub fn start() -> OtlpSink {
        let grpc = TcpListener::bind("127.0.0.1:0").expect("bind a gRPC port");
        let http = TcpListener::bind("127.0.0.1:0").expect("bind an HTTP port");
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let store = Arc::new(Store::default());
        let thread_store = store.clone();
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("otlp-sink".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    match serve(thread_store, grpc, vec![http]).await {
                        Ok(server) => {
                            let _ = tx.send(Ok(server.handle()));
                            let _ = server.await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })
            .expect("spawn the sink thread");
        let handle = rx.recv().expect("the sink thread answers").expect("the sink starts");
        OtlpSink { grpc_addr, http_addr, store, handle, thread: Some(thread) }
    }

    /// The spans received so far for `trace_id` (hex).
    pub fn trace(&self, trace_id: &str) -> Vec<SinkSpan> {
        self.store.trace(trace_id)
    }

    /// Waits until `trace_id` has at least `count` spans (or `timeout` passes) and returns them.
    pub fn wait_for(&self, trace_id: &str, count: usize, timeout: Duration) -> Vec<SinkSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.trace(trace_id);
            if spans.len() >= count || Instant::now() >= deadline {
                return spans;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Export requests received so far (both transports).
    pub fn exports(&self) -> u64 {
        self.store.exports()
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        if self.thread.take().is_some() {
            drop(self.handle.stop(false));
        }
    }
}
