//! Private keys at rest, on both backends: no row ever holds a PEM key, rows an older version
//! wrote in plain text are sealed at start-up, and a wrong or missing key is a clear error.

use gateway_proto::kind::Resource;
use gateway_proto::v1::{Certificate, Config};
use sqlx::Row;

use super::super::tests::{Scratch, postgres, sqlite, test_sealer};
use super::super::{Author, Store};
use super::Sealer;
use crate::error::ApiError;
use crate::secrets::KeyEncryptionKey;

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::postgres().await).await; })*
        }
        mod on_sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::sqlite().await).await; })*
        }
    };
}

both_backends!(
    no_row_holds_a_pem_key,
    plain_rows_of_an_older_version_are_sealed_at_start,
    a_wrong_key_stops_the_start,
    without_a_key_keys_are_neither_written_nor_read,
);

fn certificate() -> Certificate {
    crate::certificate::tests::generated(&["example.com"], (2020, 1, 1), (2090, 1, 1))
}

fn author() -> Author {
    Author {
        actor: "tester".into(),
        operation: "Test".into(),
    }
}

async fn create(store: &Store, certificate: &Certificate) -> Result<u64, ApiError> {
    let certificate = certificate.clone();
    let commit = store
        .mutate(&author(), move |config| {
            config.upsert(certificate);
            Ok(())
        })
        .await?;
    Ok(commit.version)
}

/// Every stored text that holds a certificate: its row and every version's config.
async fn stored_texts(store: &Store) -> Vec<String> {
    let mut texts = Vec::new();
    for sql in [
        "SELECT spec FROM certificates",
        "SELECT config FROM config_versions",
    ] {
        for row in sqlx::query(sql).fetch_all(&store.pool).await.unwrap() {
            texts.push(row.try_get::<String, _>(0).unwrap());
        }
    }
    texts
}

fn assert_sealed(texts: &[String]) {
    assert!(!texts.is_empty());
    for text in texts {
        assert!(
            !text.contains("PRIVATE KEY"),
            "a plain key is stored: {text}"
        );
        assert!(text.contains("enc:v1:"), "no sealed key in {text}");
    }
}

async fn no_row_holds_a_pem_key(scratch: Scratch) {
    let store = &scratch.store;
    let certificate = certificate();
    let version = create(store, &certificate).await.unwrap();
    assert_sealed(&stored_texts(store).await);

    let read: Certificate = store.get("site").await.unwrap();
    assert_eq!(read.private_key_pem, certificate.private_key_pem);
    let latest = store.latest().await.unwrap();
    assert_eq!(latest.config.certificates, vec![certificate.clone()]);
    let at_version = store.version(version).await.unwrap().unwrap();
    assert_eq!(at_version.config.unwrap().certificates, vec![certificate]);
}

async fn plain_rows_of_an_older_version_are_sealed_at_start(scratch: Scratch) {
    let certificate = certificate();
    create(&scratch.store, &certificate).await.unwrap();
    // What an older version wrote: the same rows with the key in plain text.
    let plain_config = serde_json::to_string(&Config {
        certificates: vec![certificate.clone()],
        ..Default::default()
    })
    .unwrap();
    sqlx::query("UPDATE certificates SET spec = $1")
        .bind(serde_json::to_string(&certificate).unwrap())
        .execute(&scratch.store.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE config_versions SET config = $1")
        .bind(plain_config)
        .execute(&scratch.store.pool)
        .await
        .unwrap();

    let scratch = scratch.reopen(test_sealer()).await.unwrap();
    assert_sealed(&stored_texts(&scratch.store).await);
    let read: Certificate = scratch.store.get(certificate.name()).await.unwrap();
    assert_eq!(read.private_key_pem, certificate.private_key_pem);
}

async fn a_wrong_key_stops_the_start(scratch: Scratch) {
    create(&scratch.store, &certificate()).await.unwrap();
    let other = KeyEncryptionKey::from_hex(&"ab".repeat(32), "test").unwrap();
    let Err(error) = scratch.reopen(Sealer::new(Some(other))).await else {
        panic!("a store opened with the wrong key")
    };
    let text = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(text.contains("certificate/site"), "{text}");
    assert!(text.contains("--secrets-key-file"), "{text}");
}

async fn without_a_key_keys_are_neither_written_nor_read(scratch: Scratch) {
    let scratch = scratch.reopen(Sealer::default()).await.unwrap();
    let ApiError::Invalid(violations) = create(&scratch.store, &certificate()).await.unwrap_err()
    else {
        panic!("not a validation error")
    };
    assert_eq!(violations[0].field, "private_key_pem");
    assert!(violations[0].reason.contains("--secrets-key-file"));

    let scratch = scratch.reopen(test_sealer()).await.unwrap();
    create(&scratch.store, &certificate()).await.unwrap();
    let scratch = scratch.reopen(Sealer::default()).await.unwrap();
    let read = scratch
        .store
        .latest()
        .await
        .expect_err("a sealed key read without a key");
    assert!(read.to_string().contains("--secrets-key-file"), "{read}");
}
