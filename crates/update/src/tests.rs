//! `apply` and `status` on a directory tree shaped like the box's /proc, /sys, /dev and ESP.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::*;

struct Tree {
    _dir: tempfile::TempDir,
    paths: Paths,
    image: PathBuf,
    slot_root: PathBuf,
}

fn write(p: &Path, text: impl AsRef<[u8]>) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A box running slot `running` of a 2-partition disk; the image is `image_len` bytes.
fn tree(running: &str, image_len: usize) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root_num = if running == "a" { "254:2" } else { "254:3" };
    write(
        &d.join("cmdline"),
        format!("BOOT_IMAGE=/vmlinuz root=PARTUUID=x ro voxgate.slot={running} quiet\n"),
    );
    write(
        &d.join("mountinfo"),
        format!("21 1 {root_num} / / ro,relatime shared:1 - squashfs /dev/x ro\n25 21 254:4 / /var rw - ext4 /dev/vda4 rw\n"),
    );
    for (part, num, label) in [("vda2", "254:2", "a"), ("vda3", "254:3", "b")] {
        let p = d.join("sys/devices/virtual/block/vda").join(part);
        write(&p.join("dev"), format!("{num}\n"));
        write(&p.join("partition"), "1\n");
        write(&p.join("size"), "8192\n");
        write(
            &p.join("uevent"),
            format!(
                "MAJOR=254\nDEVNAME={part}\nDEVTYPE=partition\nPARTNAME=voxgate-root-{label}\n"
            ),
        );
        fs::create_dir_all(d.join("sysdev")).unwrap();
        symlink(&p, d.join("sysdev").join(num)).unwrap();
        write(&d.join("dev").join(part), vec![0u8; 4 << 20]);
        fs::create_dir_all(d.join("byp")).unwrap();
        symlink(
            format!("../../{part}"),
            d.join("byp").join(format!("uuid-{label}")),
        )
        .unwrap();
    }
    let entries = d.join("esp/loader/entries");
    write(
        &entries.join(format!("voxgate-{running}.conf")),
        "title voxgate 1.0 (slot x)\nsort-key voxgate\nversion 4\n",
    );
    let other = if running == "a" { "b" } else { "a" };
    write(
        &entries.join(format!("voxgate-{other}+0-3.conf")),
        "title voxgate 0.9 broken\nversion 3\n",
    );
    write(&entries.join("memtest.conf"), "title memtest\nversion 99\n");
    let mut img = b"hsqs".to_vec();
    img.extend((0..image_len - 4).map(|i| (i % 251) as u8));
    let image = d.join("upd/root.squashfs");
    write(&image, &img);
    write(
        &d.join("upd/root.squashfs.sha256"),
        format!("{}  root.squashfs\n", sha(&img)),
    );
    let slot_root = d.join("slotroot");
    write(
        &slot_root.join("usr/lib/voxgate/image-release"),
        "VERSION=1.1\nBOARD=qemu\nBOARD_CMDLINE=\"console=ttyS0,115200\"\nBUILT=2026-11-29T00:00:00Z\n",
    );
    write(&slot_root.join("boot/vmlinuz-6.1.0-28-amd64"), "KERNEL");
    write(&slot_root.join("boot/initrd.img-6.1.0-28-amd64"), "INITRD");
    write(&d.join("release"), "VERSION=1.0\nBOARD=qemu\n");
    let paths = Paths {
        cmdline: d.join("cmdline"),
        mountinfo: d.join("mountinfo"),
        sys_dev_block: d.join("sysdev"),
        sys_class_block: d.join("sys/class/block"),
        dev: d.join("dev"),
        by_partuuid: d.join("byp"),
        esp: d.join("esp"),
        keys: d.join("keys"),
        release: d.join("release"),
    };
    Tree {
        _dir: dir,
        paths,
        image,
        slot_root,
    }
}

fn mount(t: &Tree) -> impl FnOnce(&Path) -> anyhow::Result<Mounted> + '_ {
    |_| Ok(Mounted::directory(&t.slot_root))
}

fn entries(t: &Tree) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(t.paths.esp.join("loader/entries"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn writes_the_other_slot_and_boots_it_next_with_three_tries() {
    let t = tree("a", 100_000);
    let done = apply(&t.paths, &t.image, None, mount(&t)).unwrap();
    assert_eq!((done.running, done.target), (Slot::A, Slot::B));
    assert_eq!(done.version, "1.1");
    assert_eq!(
        done.generation, 5,
        "one above every voxgate entry, memtest ignored"
    );
    assert_eq!(
        entries(&t),
        ["memtest.conf", "voxgate-a.conf", "voxgate-b+3.conf"],
        "the failed old entry of slot b is gone, slot a's stays"
    );
    let entry = fs::read_to_string(t.paths.esp.join("loader/entries/voxgate-b+3.conf")).unwrap();
    assert!(entry.contains("version    5\n"), "{entry}");
    assert!(entry.contains("linux      /voxgate/b/vmlinuz\n"), "{entry}");
    assert!(
        entry.contains("options    root=PARTUUID=uuid-b rootfstype=squashfs ro voxgate.slot=b panic=10 quiet console=ttyS0,115200\n"),
        "{entry}"
    );
    assert_eq!(
        fs::read(t.paths.esp.join("voxgate/b/vmlinuz")).unwrap(),
        b"KERNEL"
    );
    let img = fs::read(&t.image).unwrap();
    let dev = fs::read(t.paths.dev.join("vda3")).unwrap();
    assert_eq!(&dev[..img.len()], &img[..]);
    assert!(
        fs::read(t.paths.dev.join("vda2"))
            .unwrap()
            .iter()
            .all(|b| *b == 0),
        "the running slot is untouched"
    );
    let st = status(&t.paths.esp, Slot::A).unwrap();
    assert_eq!(st.entries[0].file, "voxgate-b+3.conf");
    assert_eq!(st.entries[0].tries_left, Some(3));
    assert_eq!(st.entries[1].tries_left, None);
}

#[test]
fn from_slot_b_the_target_is_a() {
    let t = tree("b", 5000);
    let done = apply(&t.paths, &t.image, None, mount(&t)).unwrap();
    assert_eq!(done.target, Slot::A);
    assert!(entries(&t).contains(&"voxgate-a+3.conf".to_string()));
}

#[test]
fn a_bad_image_changes_nothing() {
    let t = tree("a", 5000);
    let before = entries(&t);
    let wrong = "0".repeat(64);
    let e = apply(&t.paths, &t.image, Some(&wrong), mount(&t)).unwrap_err();
    assert!(format!("{e:#}").contains("checksum mismatch"), "{e:#}");
    assert_eq!(entries(&t), before);
    // Not a squashfs.
    let mut bytes = fs::read(&t.image).unwrap();
    bytes[0] = b'x';
    fs::write(&t.image, &bytes).unwrap();
    let e = apply(&t.paths, &t.image, Some(&sha(&bytes)), mount(&t)).unwrap_err();
    assert!(format!("{e:#}").contains("not a squashfs"), "{e:#}");
    // Too big for the partition (4 MiB).
    let t = tree("a", 5 << 20);
    let e = apply(&t.paths, &t.image, None, mount(&t)).unwrap_err();
    assert!(format!("{e:#}").contains("does not fit"), "{e:#}");
    assert_eq!(entries(&t), before);
    // No slot on the command line.
    let t = tree("a", 5000);
    fs::write(&t.paths.cmdline, "root=/dev/sda1\n").unwrap();
    let e = apply(&t.paths, &t.image, None, mount(&t)).unwrap_err();
    assert!(format!("{e:#}").contains("voxgate.slot="), "{e:#}");
}

#[test]
fn an_image_for_another_board_is_refused_before_its_entry_exists() {
    let t = tree("a", 5000);
    fs::write(&t.paths.release, "VERSION=1.0\nBOARD=apu2\n").unwrap();
    let e = apply(&t.paths, &t.image, None, mount(&t)).unwrap_err();
    assert!(format!("{e:#}").contains("board qemu"), "{e:#}");
    assert!(
        !entries(&t).iter().any(|e| e.starts_with("voxgate-b")),
        "slot b has no entry: the box keeps booting a"
    );
}

#[test]
fn with_update_keys_only_a_signed_image_is_taken() {
    let t = tree("a", 5000);
    let secret = t.paths.keys.with_file_name("release.key");
    write(&secret, "11".repeat(32));
    let public = sign(&t.image, &secret).unwrap();
    fs::create_dir_all(&t.paths.keys).unwrap();
    write(&t.paths.keys.join("release.pub"), &public);
    assert!(verify(&t.image, None, &t.paths.keys).unwrap().signed);
    // Another key's signature.
    let other = t.paths.keys.with_file_name("other.key");
    write(&other, "22".repeat(32));
    sign(&t.image, &other).unwrap();
    let e = verify(&t.image, None, &t.paths.keys).unwrap_err();
    assert!(format!("{e:#}").contains("not signed by any key"), "{e:#}");
    // No signature at all.
    fs::remove_file(t.image.with_file_name("root.squashfs.sig")).unwrap();
    let e = apply(&t.paths, &t.image, None, mount(&t)).unwrap_err();
    assert!(format!("{e:#}").contains("signed updates only"), "{e:#}");
}

#[test]
fn entry_names_and_release_files_parse() {
    assert_eq!(running_slot("a voxgate.slot=b c").unwrap(), Slot::B);
    assert!(running_slot("voxgate.slot=c").is_err());
    let r = parse_release("VERSION=2\nBOARD=apu2\nBOARD_CMDLINE=\"console=ttyS0\"\n").unwrap();
    assert_eq!(
        (r.version.as_str(), r.board.as_str(), r.cmdline.as_str()),
        ("2", "apu2", "console=ttyS0")
    );
    assert!(parse_release("BOARD=x\n").is_err());
}
