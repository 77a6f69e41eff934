/* cloudboot Path B: a native UEFI loader for local disks.
 *
 * CloudBootTarget (our vendor GUID) says what to boot:
 *   <name>              \EFI\Linux\<name>.efi (a UKI or an EFI-stub kernel) on any FAT volume
 *                       other than the one this loader came from
 *   ext4: | ext4:UUID=<uuid> | ext4:LABEL=<label> | auto
 *                       walk every block device for an ext4 distro root (it has an
 *                       os-release), take its newest /boot/vmlinuz-<v> + initrd.img-<v>
 *   xfs: / btrfs:       refused: only ext4 is read natively (say so, return)
 * The command line is CloudBootCmdline, else the \cmdline file beside this loader; for a root
 * found on disk, "root=UUID=<fs uuid> ro" is put in front when it names no root=, and with
 * no command line at all the default is that plus the architecture's serial console.
 *
 * CloudBootMark is written first ("b:start"), then "b:boot <what>" just before the kernel
 * starts.  Every failure prints one "cloudboot-loader: error: …" line and returns to the
 * firmware. */
#include "../lib/console.h"
#include "../lib/ext4.h"
#include "../lib/fw.h"
#include "../lib/libc.h"
#include "../lib/linuxboot.h"
#include "../lib/ucs2.h"
#include "../lib/vars.h"

#define TEXT_MAX 1024

#if defined(__x86_64__)
#define DEFAULT_CONSOLE "console=ttyS0,115200"
#else
#define DEFAULT_CONSOLE "console=ttyAMA0,115200"
#endif

static EFI_HANDLE own_device(void) {
    EFI_LOADED_IMAGE_PROTOCOL *li = cb_loaded_image();
    return li ? li->DeviceHandle : NULL;
}

/* ---- FAT volumes (SimpleFileSystem) ---- */

static EFI_STATUS read_fat_file(EFI_FILE_PROTOCOL *root, const char *path, void **data,
                                UINTN *size) {
    EFI_FILE_PROTOCOL *f = NULL;
    CHAR16 *wpath = ucs2_dup_ascii(path);
    if (!wpath)
        return EFI_OUT_OF_RESOURCES;
    EFI_STATUS st = root->Open(root, &f, wpath, EFI_FILE_MODE_READ, 0);
    cb_free(wpath);
    if (EFI_ERROR(st))
        return st;
    UINT8 info_buf[512];
    UINTN info_size = sizeof(info_buf);
    st = f->GetInfo(f, &cb_guid_file_info, &info_size, info_buf);
    if (EFI_ERROR(st)) {
        f->Close(f);
        return st;
    }
    EFI_FILE_INFO *info = (EFI_FILE_INFO *)info_buf;
    if (info->Attribute & EFI_FILE_DIRECTORY) {
        f->Close(f);
        return EFI_NOT_FOUND;
    }
    UINTN n = (UINTN)info->FileSize;
    UINT8 *buf = cb_alloc_pages(n + 1);
    if (!buf) {
        f->Close(f);
        return EFI_OUT_OF_RESOURCES;
    }
    UINTN got = n;
    st = f->Read(f, &got, buf);
    f->Close(f);
    if (EFI_ERROR(st) || got != n) {
        cb_free_pages(buf, n + 1);
        return EFI_ERROR(st) ? st : EFI_DEVICE_ERROR;
    }
    buf[n] = 0;
    *data = buf;
    *size = n;
    return EFI_SUCCESS;
}

static EFI_FILE_PROTOCOL *open_volume(EFI_HANDLE h) {
    EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *sfs = NULL;
    EFI_FILE_PROTOCOL *root = NULL;
    if (EFI_ERROR(cb_bs->HandleProtocol(h, &cb_guid_simple_fs, (void **)&sfs)))
        return NULL;
    if (EFI_ERROR(sfs->OpenVolume(sfs, &root)))
        return NULL;
    return root;
}

/* The \cmdline file on our own volume: EFI_SUCCESS with text, EFI_NOT_FOUND, or garbage. */
static EFI_STATUS cmdline_file(char *out, UINTN cap) {
    EFI_HANDLE dev = own_device();
    EFI_FILE_PROTOCOL *root = dev ? open_volume(dev) : NULL;
    if (!root)
        return EFI_NOT_FOUND;
    void *data;
    UINTN size;
    EFI_STATUS st = read_fat_file(root, "\\cmdline", &data, &size);
    root->Close(root);
    if (EFI_ERROR(st))
        return EFI_NOT_FOUND;
    UINT8 *p = data;
    UINTN len = size;
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r' || p[len - 1] == ' '))
        len--;
    int r = cb_var_text_decode(p, len, out, cap);
    cb_free_pages(data, size + 1);
    return r == 0 ? EFI_SUCCESS : EFI_COMPROMISED_DATA;
}

static int valid_name(const char *s) {
    if (!*s || strlen(s) > 64)
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static EFI_STATUS boot_named(const char *name, const char *cmdline) {
    char path[128];
    UINTN count = 0, searched = 0;
    EFI_HANDLE *handles = NULL;
    EFI_HANDLE self = own_device();
    cb_snprintf(path, sizeof(path), "\\EFI\\Linux\\%s.efi", name);
    EFI_STATUS st = cb_bs->LocateHandleBuffer(ByProtocol, &cb_guid_simple_fs, NULL, &count,
                                              &handles);
    if (EFI_ERROR(st))
        count = 0;
    for (UINTN i = 0; i < count; i++) {
        if (handles[i] == self)
            continue;
        EFI_FILE_PROTOCOL *root = open_volume(handles[i]);
        if (!root)
            continue;
        searched++;
        void *data;
        UINTN size;
        st = read_fat_file(root, path, &data, &size);
        root->Close(root);
        if (EFI_ERROR(st))
            continue;
        cb_free(handles);
        cb_log("target %s: %s (%lu bytes) on FAT volume %lu", name, path, (UINT64)size,
               (UINT64)i);
        char mark[160];
        cb_snprintf(mark, sizeof(mark), "b:boot %s", path);
        cb_mark(mark);
        CHAR16 *wcmd = NULL;
        if (cmdline && *cmdline) {
            wcmd = cb_alloc((strlen(cmdline) + 1) * sizeof(CHAR16));
            if (wcmd && ucs2_from_utf8(wcmd, strlen(cmdline) + 1, cmdline, strlen(cmdline)) ==
                            CB_UCS2_ERROR) {
                cb_free(wcmd);
                wcmd = NULL;
            }
        }
        st = cb_linux_boot(data, size, NULL, 0, wcmd);
        cb_free(wcmd);
        cb_free_pages(data, size + 1);
        return st;
    }
    cb_free(handles);
    return cb_fatal("init-disk", EFI_NOT_FOUND,
                    "target %s: %s not found on any FAT volume (%lu searched, this loader's "
                    "own volume excluded)",
                    name, path, (UINT64)searched);
}

/* ---- ext4 roots through DiskIO ---- */

typedef struct {
    EFI_DISK_IO_PROTOCOL *dio;
    UINT32 media_id;
} disk_ctx;

static EFI_STATUS disk_read(void *ctx, UINT64 offset, UINTN size, void *buf) {
    disk_ctx *d = ctx;
    UINT8 *p = buf;
    while (size) {
        UINTN n = size > (4u << 20) ? (4u << 20) : size;
        EFI_STATUS st = d->dio->ReadDisk(d->dio, d->media_id, offset, n, p);
        if (EFI_ERROR(st))
            return st;
        p += n;
        offset += n;
        size -= n;
    }
    return EFI_SUCCESS;
}

typedef struct {
    const char *want_uuid;  /* NULL: any */
    const char *want_label; /* NULL: any */
    UINTN ext4_seen;
} root_query;

static int is_root(ext4_fs *fs) {
    UINT32 ino;
    return !EFI_ERROR(ext4_lookup(fs, "/etc/os-release", &ino)) ||
           !EFI_ERROR(ext4_lookup(fs, "/usr/lib/os-release", &ino));
}

static int ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
        char y = *b >= 'A' && *b <= 'Z' ? (char)(*b + 32) : *b;
        if (x != y)
            return 0;
    }
    return *a == *b;
}

/* One pass over the BlockIO handles; boots and never returns on success. */
static EFI_STATUS scan_ext4(root_query *q, const char *cmdline, int *found) {
    UINTN count = 0;
    EFI_HANDLE *handles = NULL;
    EFI_HANDLE self = own_device();
    *found = 0;
    q->ext4_seen = 0;
    EFI_STATUS st = cb_bs->LocateHandleBuffer(ByProtocol, &cb_guid_block_io, NULL, &count,
                                              &handles);
    if (EFI_ERROR(st))
        return EFI_NOT_FOUND;
    for (UINTN i = 0; i < count; i++) {
        EFI_BLOCK_IO_PROTOCOL *bio = NULL;
        EFI_DISK_IO_PROTOCOL *dio = NULL;
        if (handles[i] == self)
            continue;
        if (EFI_ERROR(cb_bs->HandleProtocol(handles[i], &cb_guid_block_io, (void **)&bio)) ||
            !bio->Media->MediaPresent)
            continue;
        if (EFI_ERROR(cb_bs->HandleProtocol(handles[i], &cb_guid_disk_io, (void **)&dio)))
            continue;
        disk_ctx d = {dio, bio->Media->MediaId};
        ext4_fs fs;
        if (EFI_ERROR(ext4_open(&fs, disk_read, &d)))
            continue;
        q->ext4_seen++;
        char uuid[37];
        ext4_uuid_text(&fs, uuid);
        if (q->want_uuid && !ieq(q->want_uuid, uuid))
            continue;
        if (q->want_label && strcmp(q->want_label, fs.label) != 0)
            continue;
        if (!is_root(&fs)) {
            cb_log("ext4 %s (%s): no os-release, not a distro root", uuid, fs.label);
            continue;
        }
        char kpath[256], ipath[256], version[128];
        if (EFI_ERROR(ext4_find_kernel(&fs, kpath, sizeof(kpath), ipath, sizeof(ipath), version,
                                       sizeof(version)))) {
            cb_log("ext4 %s (%s): distro root without /boot/vmlinuz-* + initrd.img-*", uuid,
                   fs.label);
            continue;
        }
        *found = 1;
        cb_free(handles);
        cb_log("root ext4 UUID=%s LABEL=%s: %s + %s", uuid, fs.label, kpath, ipath);
        UINT32 kino, iino;
        void *kernel = NULL, *initrd = NULL;
        UINTN ksize = 0, isize = 0;
        st = ext4_lookup(&fs, kpath, &kino);
        if (!EFI_ERROR(st))
            st = ext4_read_file(&fs, kino, &kernel, &ksize);
        if (EFI_ERROR(st))
            return cb_fatal("init-disk", st, "ext4 %s: cannot read %s", uuid, kpath);
        st = ext4_lookup(&fs, ipath, &iino);
        if (!EFI_ERROR(st))
            st = ext4_read_file(&fs, iino, &initrd, &isize);
        if (EFI_ERROR(st)) {
            ext4_free(kernel, ksize);
            return cb_fatal("init-disk", st, "ext4 %s: cannot read %s", uuid, ipath);
        }
        /* The command line: the caller's, with root= in front when it has none. */
        char *full = cb_alloc(TEXT_MAX + 128);
        CHAR16 *wcmd = cb_alloc((TEXT_MAX + 128) * sizeof(CHAR16));
        if (!full || !wcmd) {
            ext4_free(kernel, ksize);
            ext4_free(initrd, isize);
            return cb_fatal("lab", EFI_OUT_OF_RESOURCES, "no memory for the command line");
        }
        full[0] = 0;
        int has_root = 0;
        if (cmdline) {
            for (const char *p = cmdline; *p; p++)
                if ((p == cmdline || p[-1] == ' ') && cb_startswith(p, "root="))
                    has_root = 1;
        }
        if (!has_root)
            cb_snprintf(full, TEXT_MAX + 128, "root=UUID=%s ro ", uuid);
        cb_strlcat(full, cmdline ? cmdline : DEFAULT_CONSOLE, TEXT_MAX + 128);
        ucs2_from_utf8(wcmd, TEXT_MAX + 128, full, strlen(full));
        cb_log("kernel %s (%lu bytes), initrd %lu bytes, cmdline: %s", version[0] ? version : kpath,
               (UINT64)ksize, (UINT64)isize, full);
        char mark[320];
        cb_snprintf(mark, sizeof(mark), "b:boot ext4 %s %s", uuid, kpath);
        cb_mark(mark);
        st = cb_linux_boot(kernel, ksize, initrd, isize, wcmd);
        ext4_free(kernel, ksize);
        ext4_free(initrd, isize);
        cb_free(full);
        cb_free(wcmd);
        return st;
    }
    cb_free(handles);
    return EFI_NOT_FOUND;
}

static void connect_all(void) {
    UINTN count = 0;
    EFI_HANDLE *handles = NULL;
    if (EFI_ERROR(cb_bs->LocateHandleBuffer(AllHandles, NULL, NULL, &count, &handles)))
        return;
    for (UINTN i = 0; i < count; i++)
        cb_bs->ConnectController(handles[i], NULL, NULL, TRUE);
    cb_free(handles);
}

static EFI_STATUS boot_ext4(const char *selector, const char *target, const char *cmdline) {
    root_query q = {NULL, NULL, 0};
    if (cb_startswith(selector, "UUID="))
        q.want_uuid = selector + 5;
    else if (cb_startswith(selector, "LABEL="))
        q.want_label = selector + 6;
    else if (*selector)
        return cb_fatal("init-plan", EFI_INVALID_PARAMETER,
                       "CloudBootTarget %s: after ext4: expected nothing, UUID=<uuid> or "
                       "LABEL=<label>",
                       target);
    int found = 0;
    for (int pass = 0; pass < 2; pass++) {
        EFI_STATUS st = scan_ext4(&q, cmdline, &found);
        if (found)
            return st; /* it tried to boot and already said why it failed */
        if (pass == 0)
            connect_all(); /* a device the boot manager did not connect */
    }
    return cb_fatal("init-disk", EFI_NOT_FOUND,
                    "CloudBootTarget %s: no ext4 distro root found (%lu ext4 file systems "
                    "seen%s%s)",
                    target, (UINT64)q.ext4_seen, selector[0] ? ", none matching " : "", selector);
}

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *systab) {
    static char target[TEXT_MAX], cmdline[TEXT_MAX];
    cb_init(image, systab);
    cb_event("loader-start");
    cb_log("Path B loader starting");
    EFI_STATUS st = cb_mark("b:start");
    if (EFI_ERROR(st))
        cb_log("warning: cannot write CloudBootMark (%r); going on", st);

    st = cb_var_get_text(u"CloudBootTarget", target, sizeof(target));
    if (st == EFI_NOT_FOUND)
        return cb_fatal("init-plan", st,
                        "CloudBootTarget is not set (vendor GUID "
                        "c10ddb07-83c5-4d3e-9b76-1f4c0e7a3b8e; on the host: cloudboot vars "
                        "set --vars FILE --target NAME|ext4:|auto)");
    if (EFI_ERROR(st))
        return cb_fatal("init-plan", st,
                        "CloudBootTarget holds no usable text (empty, not UTF-8/UCS-2, "
                        "control characters or over %u bytes)",
                        (unsigned)TEXT_MAX);

    const char *cmd = NULL;
    st = cb_var_get_text(u"CloudBootCmdline", cmdline, sizeof(cmdline));
    if (!EFI_ERROR(st)) {
        cmd = cmdline;
        cb_log("command line from CloudBootCmdline");
    } else if (st != EFI_NOT_FOUND) {
        return cb_fatal("init-plan", st,
                        "CloudBootCmdline holds no usable text (empty, not UTF-8/UCS-2, "
                        "control characters or too long)");
    } else {
        st = cmdline_file(cmdline, sizeof(cmdline));
        if (st == EFI_COMPROMISED_DATA)
            return cb_fatal("init-plan", st,
                            "\\cmdline on the loader's volume holds no usable text");
        if (!EFI_ERROR(st)) {
            cmd = cmdline;
            cb_log("command line from \\cmdline");
        }
    }
    cb_log("CloudBootTarget=%s", target);

    if (!strcmp(target, "auto"))
        return boot_ext4("", target, cmd);
    if (cb_startswith(target, "ext4:"))
        return boot_ext4(target + 5, target, cmd);
    if (cb_startswith(target, "xfs:") || cb_startswith(target, "btrfs:"))
        return cb_fatal("init-plan", EFI_UNSUPPORTED,
                        "CloudBootTarget %s: this loader reads ext4 only (use ext4:, auto or "
                        "a UKI name)",
                        target);
    if (!valid_name(target))
        return cb_fatal("init-plan", EFI_INVALID_PARAMETER,
                        "CloudBootTarget %s: not a name ([A-Za-z0-9._-], at most 64), "
                       "ext4:[UUID=|LABEL=...] or auto",
                       target);
    return boot_named(target, cmd);
}
