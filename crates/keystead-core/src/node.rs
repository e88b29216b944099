//! The node handle: the store, the command log, the key hierarchy and the token authority,
//! opened once at start-up and shared by every request.

use crate::access_cache::{self, AccessCache};
use crate::key_cache::{self, KeyCache};
use crate::verified_tokens::{self, VerifiedTokens};
use crate::{CommandLog, CoreError, LocalLog};
use keystead_crypto::{password, random, token::TokenSigner, token::TokenVerifier, Kek, SealedBox};
use keystead_model::{ApplyError, Ciphertext, Command, Deployment};
use keystead_store::{ReadView, Store};
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

use crate::Clock;

/// AAD for the sealed token-signing key.
const SIGNING_KEY_AAD: &[u8] = b"keystead:v1:token-signing-key";

pub struct NodeConfig {
    /// Where the redb file lives.
    pub data_dir: PathBuf,
    /// Lifetime of issued access tokens, seconds. Must stay above 300: azure-identity refreshes
    /// tokens that expire within 5 minutes, so shorter ones cost a token request per call.
    pub token_lifetime: i64,
}

impl NodeConfig {
    pub fn new(data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            data_dir,
            token_lifetime: 3600,
        }
    }
}

/// What a first start created that only exists in memory now and must be handed to the
/// operator (it is stored only hashed).
pub struct Bootstrap {
    pub admin_token: Option<Zeroizing<String>>,
}

pub struct Node {
    pub(crate) store: Arc<Store>,
    pub(crate) log: Arc<dyn CommandLog>,
    pub(crate) kek: Kek,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) tenant_id: String,
    pub(crate) signer: TokenSigner,
    pub(crate) verifier: TokenVerifier,
    pub(crate) token_lifetime: i64,
    /// Parsed private keys of key versions (see `key_cache`); shared with blocking tasks.
    pub(crate) key_cache: Arc<KeyCache>,
    /// Claims of bearer tokens whose signature was checked (see `verified_tokens`).
    pub(crate) verified_tokens: VerifiedTokens,
    /// Principals and grants read from the current state (see `access_cache`).
    pub(crate) access: AccessCache,
    /// What a token's issuer must end with: `/<tenant>/v2.0`.
    pub(crate) issuer_suffix: String,
}

impl Node {
    /// Opens the node's store under `config.data_dir` with the single-node log, initializing a
    /// fresh deployment (tenant, token-signing key, admin token) on first start.
    pub async fn open_single(
        config: NodeConfig,
        kek: Kek,
        clock: Arc<dyn Clock>,
    ) -> Result<(Node, Bootstrap), CoreError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| CoreError::Internal(format!("creating the data dir: {e}")))?;
        let store = Arc::new(Store::open(&config.data_dir.join("keystead.redb"))?);
        let log = Arc::new(LocalLog::new(store.clone()));
        Node::open(config, store, log, kek, clock).await
    }

    /// Opens a node over an existing store and log (the replicated modes pass their own log).
    pub async fn open(
        config: NodeConfig,
        store: Arc<Store>,
        log: Arc<dyn CommandLog>,
        kek: Kek,
        clock: Arc<dyn Clock>,
    ) -> Result<(Node, Bootstrap), CoreError> {
        let mut admin_token = None;
        let deployment = match committed_deployment(&store, log.as_ref()).await? {
            Some(deployment) => deployment,
            None => {
                let (deployment, token) = new_deployment(&kek, clock.now())?;
                match log
                    .propose(Command::InitDeployment(deployment.clone()))
                    .await
                {
                    Ok(_) => {
                        admin_token = Some(token);
                        deployment
                    }
                    // An earlier start's proposal was committed after all: use it.
                    Err(CoreError::Refused(ApplyError::AlreadyInitialized)) => {
                        committed_deployment(&store, log.as_ref())
                            .await?
                            .ok_or_else(|| CoreError::Internal("the deployment vanished".into()))?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let sealed = open_sealed_box(&deployment.token_signing_key)?;
        let pkcs8 = kek.open(SIGNING_KEY_AAD, &sealed)?;
        let signer = TokenSigner::from_pkcs8(&pkcs8)?;
        let verifier = signer.verifier();
        let node = Node {
            store,
            log,
            kek,
            clock,
            tenant_id: deployment.tenant_id.clone(),
            signer,
            verifier,
            token_lifetime: config.token_lifetime,
            key_cache: Arc::new(KeyCache::new(key_cache::CAPACITY, key_cache::IDLE)),
            verified_tokens: VerifiedTokens::new(verified_tokens::CAPACITY),
            access: AccessCache::new(access_cache::CAPACITY),
            issuer_suffix: format!("/{}/v2.0", deployment.tenant_id),
        };
        Ok((node, Bootstrap { admin_token }))
    }

    /// Waits until local reads are linearizable (see [`CommandLog::read_barrier`]).
    pub async fn read_barrier(&self) -> Result<(), CoreError> {
        self.log.read_barrier().await
    }

    /// See [`CommandLog::runs_timers`].
    pub fn runs_timers(&self) -> bool {
        self.log.runs_timers()
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub(crate) fn read(&self) -> Result<ReadView, CoreError> {
        Ok(self.store.read()?)
    }

    /// Seals `plaintext` under the KEK with `aad`, as the opaque ciphertext the model carries.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Ciphertext, CoreError> {
        let sealed = self.kek.seal(aad, plaintext)?;
        postcard::to_stdvec(&sealed)
            .map(Ciphertext)
            .map_err(|e| CoreError::Internal(format!("encoding a sealed box: {e}")))
    }

    pub(crate) fn open_sealed(
        &self,
        aad: &[u8],
        ciphertext: &Ciphertext,
    ) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        Ok(self.kek.open(aad, &open_sealed_box(ciphertext)?)?)
    }

    /// Proposes `command`, attributed to the caller of the request being handled (see
    /// [`crate::origin`]).
    pub(crate) async fn propose(
        &self,
        command: Command,
    ) -> Result<keystead_model::Applied, CoreError> {
        let command = match crate::origin::current() {
            Some(caller) if !command.is_region_local() => Command::Attributed {
                origin: keystead_model::Origin {
                    caller,
                    at: self.clock.now(),
                },
                command: Box::new(command),
            },
            _ => command,
        };
        self.log.propose(command).await
    }
}

fn open_sealed_box(ciphertext: &Ciphertext) -> Result<SealedBox, CoreError> {
    postcard::from_bytes(&ciphertext.0)
        .map_err(|e| CoreError::Internal(format!("decoding a sealed box: {e}")))
}

/// The deployment, if one is committed. A replicated node's store may only lag its log (a
/// cluster restarted after a crash re-applies entries its state file had not made durable), so
/// when the store has none this reads through the log first: an existing deployment is then
/// found, never replaced by a new one.
async fn committed_deployment(
    store: &Store,
    log: &dyn CommandLog,
) -> Result<Option<Deployment>, CoreError> {
    if let Some(deployment) = store.read()?.deployment()? {
        return Ok(Some(deployment));
    }
    log.read_barrier().await?;
    Ok(store.read()?.deployment()?)
}

fn new_deployment(kek: &Kek, now: i64) -> Result<(Deployment, Zeroizing<String>), CoreError> {
    let pkcs8 = TokenSigner::generate_pkcs8()?;
    let sealed = kek.seal(SIGNING_KEY_AAD, &pkcs8)?;
    let token_signing_key = postcard::to_stdvec(&sealed)
        .map(Ciphertext)
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    // A letter prefix: a token starting with '-' would read as a flag on command lines.
    let admin_token = Zeroizing::new(format!("ksa_{}", random::random_token(32)?.as_str()));
    let deployment = Deployment {
        tenant_id: new_guid()?,
        token_signing_key,
        admin_token_hash: password::hash_secret(&admin_token)?,
        created: now,
    };
    Ok((deployment, admin_token))
}

/// A random GUID-shaped id (tenant ids, client ids, role assignment ids).
pub(crate) fn new_guid() -> Result<String, CoreError> {
    let hex = random::new_version_id()?;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}
