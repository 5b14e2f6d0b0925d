//! Keys on a PKCS#11 token (an HSM, a smart card, SoftHSM2).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use sha2::{Digest as _, Sha256};

use crate::{KeyError, Pkcs11Location, SecretSource, Signer, SIGNATURE_LEN};

/// DER of the OID prime256v1 (1.2.840.10045.3.1.7), the `CKA_EC_PARAMS` of P-256.
const P256_EC_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// Length of an uncompressed P-256 point.
const POINT_LEN: usize = 65;

/// One initialised context per module for the whole process: `C_Initialize`
/// may be called once per process and `C_Finalize` would end every other
/// session, so contexts are never dropped.
fn context(module: &Path) -> Result<Pkcs11, KeyError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(ctx) = map.get(module) {
        return Ok(ctx.clone());
    }
    let load_err = |source| KeyError::ModuleLoad {
        module: module.to_owned(),
        source,
    };
    let ctx = Pkcs11::new(module).map_err(load_err)?;
    match ctx.initialize(CInitializeArgs::OsThreads) {
        // Someone else in this process initialised it: share it.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(load_err(e)),
    }
    map.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

fn find_slot(ctx: &Pkcs11, token: &str) -> Result<Slot, KeyError> {
    let mut found = Vec::new();
    for slot in ctx
        .get_slots_with_token()
        .map_err(KeyError::pkcs11("C_GetSlotList"))?
    {
        let info = ctx
            .get_token_info(slot)
            .map_err(KeyError::pkcs11("C_GetTokenInfo"))?;
        if info.token_initialized() && info.label().trim_end() == token {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [] => Err(KeyError::TokenNotFound(token.to_owned())),
        [slot] => Ok(*slot),
        _ => Err(KeyError::Ambiguous(format!(
            "{} tokens are labelled {token:?}",
            found.len()
        ))),
    }
}

/// Opens a session on the token of `loc` and logs the user in.
pub(crate) fn login(
    loc: &Pkcs11Location,
    secrets: &dyn SecretSource,
    rw: bool,
) -> Result<Session, KeyError> {
    let ctx = context(&loc.module)?;
    let slot = find_slot(&ctx, &loc.token)?;
    let session = if rw {
        ctx.open_rw_session(slot)
    } else {
        ctx.open_ro_session(slot)
    }
    .map_err(KeyError::pkcs11("C_OpenSession"))?;
    let pin = secrets.pkcs11_pin(&loc.token)?;
    let pin = AuthPin::new(pin.as_str().to_owned());
    match session.login(UserType::User, Some(&pin)) {
        // Login state is per token and process: another signer already did it.
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(CkError::Pkcs11(
            RvError::PinIncorrect | RvError::PinLenRange | RvError::PinInvalid,
            _,
        )) => Err(KeyError::WrongPin(loc.token.clone())),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(KeyError::PinLocked(loc.token.clone())),
        Err(e) => Err(KeyError::pkcs11("C_Login")(e)),
    }
}

pub(crate) fn find(
    session: &Session,
    template: &[Attribute],
) -> Result<Vec<ObjectHandle>, KeyError> {
    session
        .find_objects(template)
        .map_err(KeyError::pkcs11("C_FindObjects"))
}

/// The one object `find` found for `loc`'s label: [`KeyError::KeyNotFound`]
/// for none, [`KeyError::Ambiguous`] for more (`what`: "private keys",
/// "secret keys").
pub(crate) fn the_one(
    found: &[ObjectHandle],
    loc: &Pkcs11Location,
    what: &str,
) -> Result<ObjectHandle, KeyError> {
    match found {
        [] => Err(KeyError::KeyNotFound {
            token: loc.token.clone(),
            label: loc.key_label.clone(),
        }),
        [key] => Ok(*key),
        more => Err(KeyError::Ambiguous(format!(
            "{} {what} are labelled {:?} on token {:?}",
            more.len(),
            loc.key_label,
            loc.token
        ))),
    }
}

fn private_keys(session: &Session, label: &str) -> Result<Vec<ObjectHandle>, KeyError> {
    find(
        session,
        &[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Label(label.as_bytes().to_vec()),
        ],
    )
}

/// Unwraps `CKA_EC_POINT`: a DER OCTET STRING around the uncompressed point
/// (some tokens return the bare point).
fn decode_ec_point(raw: &[u8]) -> Result<p256::PublicKey, KeyError> {
    let point = match raw {
        [0x04, 0x41, rest @ ..] if rest.len() == POINT_LEN => rest,
        [0x04, ..] if raw.len() == POINT_LEN => raw,
        _ => return Err(KeyError::BadTokenOutput("EC point")),
    };
    p256::PublicKey::from_sec1_bytes(point).map_err(|_| KeyError::BadTokenOutput("EC point"))
}

pub(crate) fn attribute(
    session: &Session,
    obj: ObjectHandle,
    ty: AttributeType,
) -> Result<Option<Attribute>, KeyError> {
    Ok(session
        .get_attributes(obj, &[ty])
        .map_err(KeyError::pkcs11("C_GetAttributeValue"))?
        .into_iter()
        .next())
}

/// Reads the public key of the pair whose private half is `private`: from the
/// public key object with the same label and `CKA_ID`, else from the private
/// key's `CKA_PUBLIC_KEY_INFO` (PKCS#11 3.0).
fn read_public_key(
    session: &Session,
    private: ObjectHandle,
    label: &str,
) -> Result<p256::PublicKey, KeyError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if let Some(Attribute::Id(id)) = attribute(session, private, AttributeType::Id)? {
        template.push(Attribute::Id(id));
    }
    if let [public] = find(session, &template)?.as_slice() {
        if let Some(Attribute::EcParams(params)) =
            attribute(session, *public, AttributeType::EcParams)?
        {
            if params != P256_EC_PARAMS {
                return Err(KeyError::BadTokenOutput("curve (not P-256)"));
            }
        }
        if let Some(Attribute::EcPoint(point)) =
            attribute(session, *public, AttributeType::EcPoint)?
        {
            return decode_ec_point(&point);
        }
    }
    match attribute(session, private, AttributeType::PublicKeyInfo) {
        Ok(Some(Attribute::PublicKeyInfo(spki))) if !spki.is_empty() => {
            p256::PublicKey::from_public_key_der(&spki)
                .map_err(|_| KeyError::BadTokenOutput("public key info"))
        }
        _ => Err(KeyError::BadTokenOutput(
            "public key (no public key object)",
        )),
    }
}

/// Destroys every object labelled `loc.key_label` on the token (a key pair
/// and its public half), in a read-write session: to undo a half-finished
/// setup, or to retire a key for good. Returns how many objects it destroyed.
pub fn destroy(loc: &Pkcs11Location, secrets: &dyn SecretSource) -> Result<usize, KeyError> {
    let session = login(loc, secrets, true)?;
    let objects = find(
        &session,
        &[Attribute::Label(loc.key_label.as_bytes().to_vec())],
    )?;
    for object in &objects {
        session
            .destroy_object(*object)
            .map_err(KeyError::pkcs11("C_DestroyObject"))?;
    }
    Ok(objects.len())
}

/// A P-256 key pair on a PKCS#11 token; the private key never leaves it.
///
/// Holds one logged-in session. Signing sends the SHA-256 digest, computed
/// here, to the token with `CKM_ECDSA`; each signature is checked against the
/// public key before it is returned.
pub struct Pkcs11Signer {
    loc: Pkcs11Location,
    session: Session,
    key: ObjectHandle,
    public: p256::PublicKey,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("location", &self.loc)
            .finish_non_exhaustive()
    }
}

/// How a private key is protected on its token, as the token reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyProtection {
    /// `CKA_SENSITIVE`: the value cannot be read in the clear.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`: the key can be wrapped and exported.
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`: the key has been sensitive since it was made.
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`: the key has never been extractable.
    pub never_extractable: bool,
    /// Whether reading `CKA_VALUE` returned anything (it must not).
    pub value_readable: bool,
    /// `CKA_TOKEN`: the key is stored on the token, not just in the session.
    pub on_token: bool,
}

impl Pkcs11Signer {
    /// Generates a P-256 key pair on the token, labelled `loc.key_label`, with
    /// a random 16-byte `CKA_ID`; the private key is `CKA_TOKEN`, `CKA_PRIVATE`,
    /// `CKA_SENSITIVE` and not `CKA_EXTRACTABLE`.
    ///
    /// Refuses ([`KeyError::AlreadyExists`]) when any object on the token
    /// already has that label.
    pub fn generate(loc: &Pkcs11Location, secrets: &dyn SecretSource) -> Result<Self, KeyError> {
        let session = login(loc, secrets, true)?;
        let label = loc.key_label.as_bytes().to_vec();
        if !find(&session, &[Attribute::Label(label.clone())])?.is_empty() {
            return Err(KeyError::AlreadyExists(loc.locator()));
        }
        let mut id = vec![0u8; 16];
        getrandom::getrandom(&mut id)
            .map_err(|_| KeyError::BadTokenOutput("random (host RNG failed)"))?;
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(P256_EC_PARAMS.to_vec()),
            Attribute::Label(label.clone()),
            Attribute::Id(id.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label),
            Attribute::Id(id),
        ];
        let (public, private) = session
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(KeyError::pkcs11("C_GenerateKeyPair"))?;
        // Another process may have raced us to the same label: keep neither twin.
        if private_keys(&session, &loc.key_label)?.len() != 1 {
            let _ = session.destroy_object(private);
            let _ = session.destroy_object(public);
            return Err(KeyError::AlreadyExists(loc.locator()));
        }
        let public = read_public_key(&session, private, &loc.key_label)?;
        Ok(Pkcs11Signer {
            loc: loc.clone(),
            session,
            key: private,
            public,
        })
    }

    /// Opens the key pair labelled `loc.key_label` on the token.
    pub fn open(loc: &Pkcs11Location, secrets: &dyn SecretSource) -> Result<Self, KeyError> {
        let session = login(loc, secrets, false)?;
        let key = the_one(
            &private_keys(&session, &loc.key_label)?,
            loc,
            "private keys",
        )?;
        let public = read_public_key(&session, key, &loc.key_label)?;
        Ok(Pkcs11Signer {
            loc: loc.clone(),
            session,
            key,
            public,
        })
    }

    /// Where the key lives.
    pub fn location(&self) -> &Pkcs11Location {
        &self.loc
    }

    /// Reads the protection attributes of the private key from the token, and
    /// tries to read its value, for audits.
    pub fn protection(&self) -> Result<KeyProtection, KeyError> {
        let flag = |ty| -> Result<bool, KeyError> {
            Ok(matches!(
                attribute(&self.session, self.key, ty)?,
                Some(
                    Attribute::Sensitive(true)
                        | Attribute::Extractable(true)
                        | Attribute::AlwaysSensitive(true)
                        | Attribute::NeverExtractable(true)
                        | Attribute::Token(true)
                )
            ))
        };
        let value_readable = match self
            .session
            .get_attributes(self.key, &[AttributeType::Value])
        {
            Ok(attrs) => attrs
                .iter()
                .any(|a| matches!(a, Attribute::Value(v) if !v.is_empty())),
            Err(_) => false,
        };
        Ok(KeyProtection {
            sensitive: flag(AttributeType::Sensitive)?,
            extractable: flag(AttributeType::Extractable)?,
            always_sensitive: flag(AttributeType::AlwaysSensitive)?,
            never_extractable: flag(AttributeType::NeverExtractable)?,
            value_readable,
            on_token: flag(AttributeType::Token)?,
        })
    }
}

impl Signer for Pkcs11Signer {
    fn public_key(&self) -> p256::PublicKey {
        self.public
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], KeyError> {
        let digest = Sha256::digest(message);
        let raw = self
            .session
            .sign(&Mechanism::Ecdsa, self.key, &digest)
            .map_err(KeyError::pkcs11("C_Sign"))?;
        if raw.len() != SIGNATURE_LEN {
            return Err(KeyError::BadTokenOutput("signature length"));
        }
        let sig = Signature::from_slice(&raw).map_err(|_| KeyError::BadTokenOutput("signature"))?;
        let sig = sig.normalize_s().unwrap_or(sig);
        VerifyingKey::from(&self.public)
            .verify(message, &sig)
            .map_err(|_| KeyError::BadTokenOutput("signature (does not verify)"))?;
        Ok(sig.to_bytes().into())
    }

    fn locator(&self) -> String {
        self.loc.locator()
    }
}
