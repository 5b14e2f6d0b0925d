//! PIV management keys in files: format, permissions, algorithms.
#![cfg(test)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use citycard_keys::{
    is_factory_default, open_management_key, FixedSecrets, KeyError, ManagementKeyLocation,
};
use citycard_proto::piv::ManagementAlgorithm;

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn open(
    path: &Path,
    alg: ManagementAlgorithm,
) -> Result<Box<dyn citycard_keys::ManagementKey>, KeyError> {
    let loc: ManagementKeyLocation = path.to_str().unwrap().parse().unwrap();
    open_management_key(&loc, alg, &FixedSecrets::new("", ""))
}

#[test]
fn a_private_hex_file_opens_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mgm.key");
    let hex24 = "3a915c07e2441b689f10d37e25b6814c0df962a733c85e14";
    write(&p, &format!("# city management key\n{hex24}\n"), 0o600);
    let k = open(&p, ManagementAlgorithm::TripleDes).unwrap();
    assert!(!is_factory_default(k.as_ref()).unwrap());
    let k = open(&p, ManagementAlgorithm::Aes192).unwrap();
    assert_eq!(k.algorithm(), ManagementAlgorithm::Aes192);
    assert!(!format!("{k:?}").contains("3a91"));
    // Wrong length for the algorithm.
    let e = open(&p, ManagementAlgorithm::Aes128).err().unwrap();
    assert!(matches!(e, KeyError::BadManagementKey { .. }), "{e}");
    // Readable by group or others.
    for mode in [0o640, 0o604, 0o660, 0o602] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = open(&p, ManagementAlgorithm::TripleDes).err().unwrap();
        assert!(
            matches!(e, KeyError::KeyFilePermissions { .. }),
            "{mode:o}: {e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
    // Not hex, two keys, empty.
    for text in ["zz\n", &format!("{hex24}\n{hex24}\n"), "\n# nothing\n"] {
        write(&p, text, 0o600);
        let e = open(&p, ManagementAlgorithm::TripleDes).err().unwrap();
        assert!(
            matches!(e, KeyError::BadManagementKey { .. }),
            "{text:?}: {e}"
        );
        assert!(!e.to_string().contains(hex24));
    }
    // The factory key is recognised (3DES and AES-192).
    write(
        &p,
        "010203040506070801020304050607080102030405060708\n",
        0o400,
    );
    for alg in [ManagementAlgorithm::TripleDes, ManagementAlgorithm::Aes192] {
        assert!(is_factory_default(open(&p, alg).unwrap().as_ref()).unwrap());
    }
    let e = open(&dir.path().join("none"), ManagementAlgorithm::TripleDes)
        .err()
        .unwrap();
    assert!(matches!(e, KeyError::NotFound(_)), "{e}");
}
