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
        efi: d.join("efi"),
    };
    fs::create_dir_all(&paths.efi).unwrap();
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
    let st = status(&t.paths, Slot::A).unwrap();
    assert_eq!(st.firmware, Firmware::Uefi);
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

// Legacy BIOS: GRUB's environment block and the slots' grub.cfg.

fn grub_env(vars: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::from(
        "# GRUB Environment Block\n# WARNING: Do not edit this file by tools other than grub-editenv!!!\n",
    );
    for (k, v) in vars {
        text.push_str(&format!("{k}={v}\n"));
    }
    let mut bytes = text.into_bytes();
    bytes.resize(1024, b'#');
    bytes
}

fn read_grub_env(t: &Tree) -> grub::GrubEnv {
    grub::read_env(&grub::env_path(&t.paths.esp)).unwrap()
}

/// The tree of `tree()` booted by legacy BIOS: no /sys/firmware/efi, GRUB on the ESP with
/// `vars` in its environment and a grub.cfg for slot a.
fn bios_tree(running: &str, vars: &[(&str, &str)]) -> Tree {
    let t = tree(running, 5000);
    fs::remove_dir(&t.paths.efi).unwrap();
    write(&t.paths.esp.join("grub/grub.cfg"), "# voxgate\n");
    write(&grub::env_path(&t.paths.esp), grub_env(vars));
    write(
        &grub::slot_cfg(&t.paths.esp, Slot::A),
        "set voxgate_title=\"voxgate 1.0 (slot a)\"\nset voxgate_generation=7\nlinux /voxgate/a/vmlinuz x\n",
    );
    t
}

#[test]
fn grub_env_blocks_parse_and_render_as_grub_editenv_writes_them() {
    let bytes = grub_env(&[
        ("voxgate_default", ""),
        ("voxgate_trial", "a"),
        ("other", "x=y"),
    ]);
    let mut env = grub::GrubEnv::parse(&bytes).unwrap();
    assert_eq!(env.get("voxgate_default"), None, "empty is unset");
    assert_eq!(env.trial(), Some((Slot::A, 0)), "no count: no tries");
    assert_eq!(env.get("other"), Some("x=y"));
    env.set("voxgate_tries", "3");
    env.set("voxgate_default", "b");
    env.set("odd", "back\\slash\nnewline");
    let out = env.render().unwrap();
    assert_eq!(out.len(), 1024);
    assert!(out.starts_with(
        b"# GRUB Environment Block\nvoxgate_default=b\nvoxgate_trial=a\nother=x=y\nvoxgate_tries=3\nodd=back\\\\slash\\\nnewline\n#"
    ));
    assert!(out.iter().rev().take(900).all(|b| *b == b'#'));
    let again = grub::GrubEnv::parse(&out).unwrap();
    assert_eq!(again, env);
    assert_eq!(again.trial(), Some((Slot::A, 3)));
    assert_eq!(again.default_slot(), Some(Slot::B));
    // What GRUB would not load either.
    assert!(grub::GrubEnv::parse(&out[..1000]).is_err());
    let mut bad = out.clone();
    bad[0] = b'x';
    assert!(grub::GrubEnv::parse(&bad).is_err());
    env.set("big", &"x".repeat(1100));
    assert!(env.render().is_err());
}

#[test]
fn grub_env_is_rewritten_in_place() {
    use std::os::unix::fs::MetadataExt;
    let t = bios_tree("a", &[("voxgate_default", "a")]);
    let path = grub::env_path(&t.paths.esp);
    let ino = fs::metadata(&path).unwrap().ino();
    let mut env = read_grub_env(&t);
    env.set("voxgate_trial", "b");
    grub::write_env(&path, &env).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().ino(),
        ino,
        "same file, as GRUB's save_env"
    );
    assert_eq!(read_grub_env(&t).get("voxgate_trial"), Some("b"));
    // A damaged block is replaced whole.
    fs::write(&path, "garbage").unwrap();
    grub::write_env(&path, &env).unwrap();
    assert_eq!(fs::read(&path).unwrap().len(), 1024);
}

#[test]
fn under_bios_an_update_is_a_grub_trial_and_bless_keeps_it() {
    let t = bios_tree(
        "a",
        &[
            ("voxgate_default", "a"),
            ("voxgate_trial", "b"),
            ("voxgate_tries", "0"),
        ],
    );
    let done = apply(&t.paths, &t.image, None, mount(&t)).unwrap();
    assert_eq!(done.target, Slot::B);
    assert_eq!(
        done.generation, 8,
        "one above every entry and slot grub.cfg"
    );
    assert_eq!(done.entry, "grub/grubenv voxgate_trial=b voxgate_tries=3");
    let env = read_grub_env(&t);
    assert_eq!(env.default_slot(), Some(Slot::A));
    assert_eq!(env.trial(), Some((Slot::B, 3)));
    assert_eq!(
        entries(&t),
        ["memtest.conf", "voxgate-a.conf"],
        "no systemd-boot entry for b: GRUB is in charge, the old failed one is gone"
    );
    let cfg = fs::read_to_string(grub::slot_cfg(&t.paths.esp, Slot::B)).unwrap();
    assert!(
        cfg.contains("set voxgate_title=\"voxgate 1.1 (slot b)\"\nset voxgate_generation=8\n"),
        "{cfg}"
    );
    assert!(
        cfg.contains("linux /voxgate/b/vmlinuz root=PARTUUID=uuid-b rootfstype=squashfs ro voxgate.slot=b panic=10 quiet console=ttyS0,115200\ninitrd /voxgate/b/initrd.img\n"),
        "{cfg}"
    );
    assert_eq!(
        fs::read(t.paths.esp.join("voxgate/b/initrd.img")).unwrap(),
        b"INITRD"
    );

    let st = status(&t.paths, Slot::A).unwrap();
    assert_eq!(st.firmware, Firmware::Bios);
    let view: Vec<_> = st
        .entries
        .iter()
        .map(|e| (e.slot, e.tries_left, e.tries_done))
        .collect();
    assert_eq!(view, [(Slot::B, Some(3), 0), (Slot::A, None, 0)]);

    // Still on slot a: nothing to bless; GRUB then boots b (counting a try) and it is healthy.
    assert_eq!(bless(&t.paths).unwrap(), Blessed::Already(Slot::A));
    let mut env = read_grub_env(&t);
    env.set("voxgate_tries", "2");
    grub::write_env(&grub::env_path(&t.paths.esp), &env).unwrap();
    fs::write(&t.paths.cmdline, "root=PARTUUID=uuid-b voxgate.slot=b\n").unwrap();
    let st = status(&t.paths, Slot::B).unwrap();
    assert_eq!(
        (st.entries[0].tries_left, st.entries[0].tries_done),
        (Some(2), 1)
    );
    assert_eq!(bless(&t.paths).unwrap(), Blessed::Now(Slot::B));
    let env = read_grub_env(&t);
    assert_eq!((env.default_slot(), env.trial()), (Some(Slot::B), None));
    assert_eq!(bless(&t.paths).unwrap(), Blessed::Already(Slot::B));
}

#[test]
fn under_bios_the_slot_being_written_is_never_grubs_choice() {
    // Running b on trial (not yet blessed), a the default: writing a makes b the default.
    let t = bios_tree(
        "b",
        &[
            ("voxgate_default", "a"),
            ("voxgate_trial", "b"),
            ("voxgate_tries", "2"),
        ],
    );
    write(
        &grub::slot_cfg(&t.paths.esp, Slot::B),
        "set voxgate_generation=9\n",
    );
    let mut seen = None;
    let done = apply(&t.paths, &t.image, None, |dev| {
        // Checked while the slot is written: GRUB would boot b, and a has no grub.cfg.
        let env = read_grub_env(&t);
        seen = Some((
            env.default_slot(),
            env.trial().map(|(s, _)| s),
            grub::slot_cfg(&t.paths.esp, Slot::A).exists(),
        ));
        mount(&t)(dev)
    })
    .unwrap();
    assert_eq!(seen, Some((Some(Slot::B), Some(Slot::B), false)));
    assert_eq!(done.generation, 10);
    let env = read_grub_env(&t);
    assert_eq!(
        (env.default_slot(), env.trial()),
        (Some(Slot::B), Some((Slot::A, 3)))
    );
}

#[test]
fn a_new_box_blesses_its_first_slot_and_a_broken_environment_is_rebuilt() {
    // The image's environment: slot a on trial, no default.
    let t = bios_tree(
        "a",
        &[
            ("voxgate_default", ""),
            ("voxgate_trial", "a"),
            ("voxgate_tries", "2"),
        ],
    );
    assert_eq!(bless(&t.paths).unwrap(), Blessed::Now(Slot::A));
    let env = read_grub_env(&t);
    assert_eq!((env.default_slot(), env.trial()), (Some(Slot::A), None));
    fs::write(grub::env_path(&t.paths.esp), "not an environment").unwrap();
    assert!(status(&t.paths, Slot::A).is_err(), "status says so");
    assert_eq!(bless(&t.paths).unwrap(), Blessed::Now(Slot::A));
    assert_eq!(read_grub_env(&t).default_slot(), Some(Slot::A));
}

#[test]
fn bless_leaves_uefi_to_systemd_and_bios_needs_grub_on_the_esp() {
    let t = tree("a", 5000);
    assert_eq!(bless(&t.paths).unwrap(), Blessed::NotGrub);
    let t = bios_tree("a", &[("voxgate_default", "a")]);
    fs::remove_file(t.paths.esp.join("grub/grub.cfg")).unwrap();
    let e = apply(&t.paths, &t.image, None, mount(&t)).unwrap_err();
    assert!(format!("{e:#}").contains("no grub/grub.cfg"), "{e:#}");
}

#[test]
fn grub_cfg_counts_down_from_the_tries_an_update_gives() {
    let cfg = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../rootfs/grub/grub.cfg"
    ))
    .unwrap();
    for n in 1..=TRIES {
        let step = format!(
            "if [ \"$voxgate_tries\" = {n} ]; then\n      set voxgate_tries={}\n",
            n - 1
        );
        assert!(
            cfg.contains(&step),
            "rootfs/grub/grub.cfg does not count {n} -> {}",
            n - 1
        );
    }
    let load = format!(
        "load_env --file /grub/grubenv {} {} {}\n",
        grub::DEFAULT,
        grub::TRIAL,
        grub::TRIES_LEFT
    );
    assert!(
        cfg.contains(&load),
        "rootfs/grub/grub.cfg does not load {load}"
    );
}
