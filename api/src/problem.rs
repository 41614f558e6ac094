//! Errors as RFC 9457 `application/problem+json`, in one place.
//!
//! Policy: a client error says precisely what was wrong (which field, which
//! limit, what DNS answered) and changes nothing. A server error is logged
//! with its cause and answered with a bare 500 whose detail reveals nothing.
//! Extractor rejections (bad JSON, unknown fields, oversized bodies, bad
//! path or query parameters) go through the same door.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDetails {
    /// A URI naming the kind of problem, e.g. `/problems/limit-exceeded`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What exactly went wrong, for a human.
    pub detail: String,
    /// Values the client can act on (e.g. the DNS records found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    slug: &'static str,
    detail: String,
    found: Option<Vec<String>>,
    retry_after: Option<u64>,
    www_authenticate: bool,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            slug,
            detail: detail.into(),
            found: None,
            retry_after: None,
            www_authenticate: false,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn invalid(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem {
            www_authenticate: true,
            ..Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
        }
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(what: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn too_many_attempts(retry_after: u64) -> Problem {
        Problem {
            retry_after: Some(retry_after),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-attempts",
                format!("too many failed sign-in attempts; try again in {retry_after} seconds"),
            )
        }
    }

    /// Too many requests of this kind from this client; `retry_after` seconds to wait.
    pub fn rate_limited(retry_after: u64, detail: impl Into<String>) -> Problem {
        Problem {
            retry_after: Some(retry_after),
            ..Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail)
        }
    }

    /// The body is over `api.max_body_bytes` (and was left unread).
    pub fn payload_too_large() -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "the request body is larger than this server accepts",
        )
    }

    /// Something the server depends on is down; the client may retry.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// A server-side failure: logged here with its cause, answered without it.
    pub fn internal(cause: impl std::fmt::Display) -> Problem {
        tracing::error!(error = %cause, "request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle this request",
        )
    }

    pub fn with_found(mut self, found: Vec<String>) -> Problem {
        self.found = Some(found);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, as the client is told.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    fn title(&self) -> String {
        self.status.canonical_reason().unwrap_or("Error").to_owned()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemDetails {
            kind: format!("/problems/{}", self.slug),
            title: self.title(),
            status: self.status.as_u16(),
            detail: self.detail,
            found: self.found,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read, so this connection cannot
            // carry another request: say so, or a client that pools
            // connections sends its next request into a closing socket.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<tenants::Error> for Problem {
    fn from(e: tenants::Error) -> Problem {
        use tenants::Error as E;
        match e {
            E::Invalid(detail) => Problem::invalid(detail),
            E::NotFound(what) => Problem::not_found(what),
            E::Conflict(detail) => Problem::conflict(detail),
            E::LimitExceeded(detail) => {
                Problem::new(StatusCode::CONFLICT, "limit-exceeded", detail)
            }
            E::Forbidden(detail) => Problem::forbidden(detail),
            E::RateLimited(detail) => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail)
            }
            other @ (E::Config(_) | E::Database(_) | E::Migrate(_) | E::Internal(_)) => {
                Problem::internal(other)
            }
        }
    }
}

impl From<billing::BillingError> for Problem {
    fn from(e: billing::BillingError) -> Problem {
        use billing::BillingError as E;
        match e {
            E::Invalid(detail) => Problem::invalid(detail),
            E::Conflict(detail) => Problem::conflict(detail),
            E::Unavailable(detail) => Problem::unavailable(detail),
            E::Provider(detail) => {
                Problem::new(StatusCode::BAD_GATEWAY, "payment-provider", detail)
            }
            E::Store(e) => e.into(),
        }
    }
}

impl From<vault::VaultError> for Problem {
    fn from(e: vault::VaultError) -> Problem {
        match e {
            vault::VaultError::WrongPassphrase => {
                Problem::forbidden("the current password is wrong")
            }
            other => Problem::internal(other),
        }
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Problem {
        let status = rejection.status();
        let text = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => Problem::invalid(text),
            JsonRejection::JsonSyntaxError(_) => Problem::bad_request(text),
            JsonRejection::MissingJsonContentType(_) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                text,
            ),
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => Problem::payload_too_large(),
            _ => Problem::new(status, "bad-request", text),
        }
    }
}

impl From<BytesRejection> for Problem {
    fn from(rejection: BytesRejection) -> Problem {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::payload_too_large()
        } else {
            Problem::new(status, "bad-request", rejection.body_text())
        }
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Problem {
        Problem::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Problem {
        Problem::bad_request(rejection.body_text())
    }
}

/// `axum::Json` whose rejections are problems.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A JSON body that may be left out: an empty (or all white space) body is
/// `None`; any other is read as [`Json`] reads it, with the same refusals.
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let (parts, body) = req.into_parts();
        let Bytes(bytes) =
            Bytes::from_request(Request::from_parts(parts.clone(), body), state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(OptionalJson(Some(value)))
    }
}

/// `axum::body::Bytes` whose rejections (a body over the limit) are problems.
pub struct Bytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for Bytes {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        Ok(Bytes(axum::body::Bytes::from_request(req, state).await?))
    }
}

/// `axum::extract::Path` whose rejections are problems.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}

/// `axum::extract::Query` whose rejections are problems.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

pub type ApiResult<T> = Result<T, Problem>;
