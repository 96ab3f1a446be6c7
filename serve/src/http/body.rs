//! Reading a request body under the size limit, and finding the images in it.

use super::errors::ApiError;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::HttpRequest;
use base64::Engine;
use futures_util::StreamExt;

/// The whole body, refused with 413 as soon as it is known to exceed `limit`: from the
/// Content-Length header before reading anything, else while streaming it.
pub async fn read_limited(req: &HttpRequest, mut payload: Payload, limit: usize) -> Result<Bytes, ApiError> {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// How `POST .../classify` bodies carry images.
#[derive(serde::Deserialize)]
struct JsonImages {
    images: Vec<String>,
}

/// The image files in a classify body: raw bytes, multipart `image` parts, or JSON base64.
pub async fn images(req: &HttpRequest, body: Bytes) -> Result<Vec<Bytes>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the request body is empty: send an image file (PNG, JPEG, BMP, GIF, WebP), multipart `image` parts, \
             or JSON {\"images\": [\"<base64>\"]}"
                .into(),
        ));
    }
    let mime = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if mime.starts_with("multipart/form-data") {
        multipart_images(req, body).await
    } else if mime.starts_with("application/json") {
        json_images(&body)
    } else {
        // Any other type (or none): the body is the image, recognised by its content.
        Ok(vec![body])
    }
}

async fn multipart_images(req: &HttpRequest, body: Bytes) -> Result<Vec<Bytes>, ApiError> {
    let stream = futures_util::stream::once(async move { Ok::<_, actix_web::error::PayloadError>(body) });
    let mut multipart = actix_multipart::Multipart::new(req.headers(), stream);
    let mut images = Vec::new();
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
        let is_image = field.name() == Some("image");
        let mut data = BytesMut::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
            if is_image {
                data.extend_from_slice(&chunk);
            }
        }
        if is_image {
            images.push(data.freeze());
        }
    }
    if images.is_empty() {
        return Err(ApiError::BadRequest("the multipart body has no part named `image`".into()));
    }
    Ok(images)
}

fn json_images(body: &[u8]) -> Result<Vec<Bytes>, ApiError> {
    let parsed: JsonImages = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("expected JSON {{\"images\": [\"<base64>\", ...]}}: {e}")))?;
    if parsed.images.is_empty() {
        return Err(ApiError::BadRequest("`images` is an empty list".into()));
    }
    // Padding optional, and a `data:image/png;base64,` prefix (what browsers produce) allowed.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let count = parsed.images.len();
    parsed
        .images
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let data = s.split_once(";base64,").map_or(s.as_str(), |(_, d)| d).trim();
            engine.decode(data).map(Bytes::from).map_err(|e| {
                let which = if count > 1 { format!("images[{i}]") } else { "the image".into() };
                ApiError::BadRequest(format!("{which} is not valid base64: {e}"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_accepts_padding_or_not_and_data_urls() {
        let imgs = json_images(br#"{"images": ["aGk=", "aGk", "data:image/png;base64,aGk="]}"#).unwrap();
        assert!(imgs.iter().all(|b| &b[..] == b"hi"));
        assert!(json_images(br#"{"images": []}"#).is_err());
        let err = json_images(br#"{"images": ["aGk=", "!!"]}"#).unwrap_err().to_string();
        assert!(err.contains("images[1]"), "{err}");
        assert!(json_images(b"{").is_err());
    }
}
