/* cloudboot loader: read-only ext4 reader (see ext4.h).  Layout from the kernel's
 * Documentation/filesystems/ext4 (superblock, group descriptors, inodes, extent tree,
 * directory entries). */
#include "ext4.h"
#include "libc.h"

#define SB_OFFSET 1024
#define EXT4_MAGIC 0xEF53
#define INCOMPAT_COMPRESSION 0x0001
#define INCOMPAT_JOURNAL_DEV 0x0008
#define INCOMPAT_64BIT 0x0080
#define EXTENTS_FL 0x00080000
#define INLINE_DATA_FL 0x10000000
#define EXTENT_MAGIC 0xF30A
#define S_IFMT 0xF000
#define S_IFDIR 0x4000
#define S_IFREG 0x8000
#define S_IFLNK 0xA000
#define MAX_DEPTH 5
#define MAX_LINKS 8
#define PATH_MAX_LEN 512

static UINT16 le16(const UINT8 *p) { return (UINT16)(p[0] | p[1] << 8); }
static UINT32 le32(const UINT8 *p) {
    return (UINT32)p[0] | (UINT32)p[1] << 8 | (UINT32)p[2] << 16 | (UINT32)p[3] << 24;
}

EFI_STATUS ext4_open(ext4_fs *fs, ext4_read_fn read, void *ctx) {
    UINT8 sb[1024];
    EFI_STATUS st = read(ctx, SB_OFFSET, sizeof(sb), sb);
    if (EFI_ERROR(st))
        return st;
    if (le16(sb + 0x38) != EXT4_MAGIC)
        return EFI_NOT_FOUND;
    memset(fs, 0, sizeof(*fs));
    fs->read = read;
    fs->ctx = ctx;
    UINT32 log = le32(sb + 0x18);
    if (log > 6)
        return EFI_VOLUME_CORRUPTED;
    fs->block_size = 1024u << log;
    fs->inodes_per_group = le32(sb + 0x28);
    UINT32 blocks_per_group = le32(sb + 0x20);
    UINT64 blocks = le32(sb + 0x04);
    fs->incompat = le32(sb + 0x60);
    if (fs->incompat & INCOMPAT_64BIT)
        blocks |= (UINT64)le32(sb + 0x150) << 32;
    fs->inode_size = le32(sb + 0x4c) >= 1 ? le16(sb + 0x58) : 128;
    fs->desc_size = (fs->incompat & INCOMPAT_64BIT) ? le16(sb + 0xfe) : 32;
    if (fs->desc_size < 32)
        fs->desc_size = 32;
    /* A GPT header sits at the same offset on a whole disk: its GUID bytes can match the
     * magic by chance, so the geometry must make sense too. */
    if (!fs->inodes_per_group || !blocks_per_group ||
        fs->inodes_per_group > 8 * fs->block_size || fs->inode_size < 128 ||
        fs->inode_size > 1024 || le32(sb + 0x4c) > 1 || blocks == 0)
        return EFI_VOLUME_CORRUPTED;
    UINT32 first_data_block = le32(sb + 0x14);
    fs->gdt_offset = (UINT64)(first_data_block + 1) * fs->block_size;
    fs->groups = (UINT32)((blocks - first_data_block + blocks_per_group - 1) / blocks_per_group);
    memcpy(fs->uuid, sb + 0x68, 16);
    memcpy(fs->label, sb + 0x78, 16);
    fs->label[16] = 0;
    if (fs->incompat & (INCOMPAT_COMPRESSION | INCOMPAT_JOURNAL_DEV))
        return EFI_UNSUPPORTED;
    return EFI_SUCCESS;
}

void ext4_uuid_text(const ext4_fs *fs, char out[37]) {
    char hex[33];
    cb_hex(hex, fs->uuid, 16);
    UINTN o = 0;
    for (UINTN i = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20)
            out[o++] = '-';
        out[o++] = hex[i];
    }
    out[o] = 0;
}

/* The raw inode (inode_size bytes, at most 1024) into buf. */
static EFI_STATUS read_inode(ext4_fs *fs, UINT32 ino, UINT8 *buf) {
    if (ino == 0 || (ino - 1) / fs->inodes_per_group >= fs->groups)
        return EFI_VOLUME_CORRUPTED;
    UINT32 group = (ino - 1) / fs->inodes_per_group, index = (ino - 1) % fs->inodes_per_group;
    UINT8 desc[64];
    EFI_STATUS st = fs->read(fs->ctx, fs->gdt_offset + (UINT64)group * fs->desc_size,
                             fs->desc_size >= 64 ? 64 : 32, desc);
    if (EFI_ERROR(st))
        return st;
    UINT64 table = le32(desc + 0x08);
    if (fs->desc_size >= 64)
        table |= (UINT64)le32(desc + 0x28) << 32;
    return fs->read(fs->ctx, table * fs->block_size + (UINT64)index * fs->inode_size,
                    fs->inode_size, buf);
}

static UINT64 inode_size_bytes(const UINT8 *inode) {
    return le32(inode + 0x04) | (UINT64)le32(inode + 0x6c) << 32;
}

EFI_STATUS ext4_stat(ext4_fs *fs, UINT32 ino, UINT64 *size, int *type) {
    UINT8 inode[1024];
    EFI_STATUS st = read_inode(fs, ino, inode);
    if (EFI_ERROR(st))
        return st;
    UINT16 mode = le16(inode);
    if (size)
        *size = inode_size_bytes(inode);
    if (type)
        *type = (mode & S_IFMT) == S_IFDIR   ? EXT4_FT_DIR
                : (mode & S_IFMT) == S_IFREG ? EXT4_FT_REG
                : (mode & S_IFMT) == S_IFLNK ? EXT4_FT_SYMLINK
                                             : 0;
    return EFI_SUCCESS;
}

/* Walk an extent node (i_block or a tree block), reading leaves into out (size bytes). */
static EFI_STATUS walk_extents(ext4_fs *fs, const UINT8 *node, UINTN node_len, int depth_left,
                               UINT8 *out, UINT64 size) {
    if (node_len < 12 || le16(node) != EXTENT_MAGIC)
        return EFI_VOLUME_CORRUPTED;
    UINT16 entries = le16(node + 2), depth = le16(node + 6);
    if (12 + (UINTN)entries * 12 > node_len || depth > MAX_DEPTH || depth_left < 0)
        return EFI_VOLUME_CORRUPTED;
    for (UINT16 i = 0; i < entries; i++) {
        const UINT8 *e = node + 12 + i * 12;
        if (depth == 0) {
            UINT64 lblk = le32(e);
            UINT32 len = le16(e + 4);
            UINT64 phys = (UINT64)le16(e + 6) << 32 | le32(e + 8);
            if (len > 32768)
                continue; /* uninitialised: reads as zeros, the buffer already is */
            UINT64 off = lblk * fs->block_size;
            if (off >= size)
                continue;
            UINT64 bytes = (UINT64)len * fs->block_size;
            if (bytes > size - off)
                bytes = size - off;
            EFI_STATUS st = fs->read(fs->ctx, phys * fs->block_size, (UINTN)bytes, out + off);
            if (EFI_ERROR(st))
                return st;
        } else {
            UINT64 child = (UINT64)le16(e + 8) << 32 | le32(e + 4);
            UINT8 *blk = cb_alloc(fs->block_size);
            if (!blk)
                return EFI_OUT_OF_RESOURCES;
            EFI_STATUS st = fs->read(fs->ctx, child * fs->block_size, fs->block_size, blk);
            if (!EFI_ERROR(st))
                st = walk_extents(fs, blk, fs->block_size, depth_left - 1, out, size);
            cb_free(blk);
            if (EFI_ERROR(st))
                return st;
        }
    }
    return EFI_SUCCESS;
}

/* Contents of an inode already read (regular file, directory, slow symlink). */
static EFI_STATUS read_inode_data(ext4_fs *fs, const UINT8 *inode, void **data, UINTN *size) {
    UINT32 flags = le32(inode + 0x20);
    UINT64 sz = inode_size_bytes(inode);
    if (flags & INLINE_DATA_FL)
        return EFI_UNSUPPORTED;
    if (!(flags & EXTENTS_FL))
        return EFI_UNSUPPORTED; /* ext2/3 block maps */
    if (sz > ((UINT64)1 << 32))
        return EFI_OUT_OF_RESOURCES;
    UINT8 *buf = cb_alloc_pages((UINTN)sz + 1);
    if (!buf)
        return EFI_OUT_OF_RESOURCES;
    memset(buf, 0, (UINTN)sz + 1);
    EFI_STATUS st = walk_extents(fs, inode + 0x28, 60, MAX_DEPTH, buf, sz);
    if (EFI_ERROR(st)) {
        cb_free_pages(buf, (UINTN)sz + 1);
        return st;
    }
    *data = buf;
    *size = (UINTN)sz;
    return EFI_SUCCESS;
}

EFI_STATUS ext4_read_file(ext4_fs *fs, UINT32 ino, void **data, UINTN *size) {
    UINT8 inode[1024];
    EFI_STATUS st = read_inode(fs, ino, inode);
    if (EFI_ERROR(st))
        return st;
    void *buf = NULL;
    UINTN n = 0;
    st = read_inode_data(fs, inode, &buf, &n);
    if (EFI_ERROR(st))
        return st;
    *data = buf;
    *size = n;
    return EFI_SUCCESS;
}

void ext4_free(void *data, UINTN size) { cb_free_pages(data, size + 1); }

EFI_STATUS ext4_readdir(ext4_fs *fs, UINT32 dir_ino, ext4_dir_fn fn, void *ctx) {
    UINT8 inode[1024];
    EFI_STATUS st = read_inode(fs, dir_ino, inode);
    if (EFI_ERROR(st))
        return st;
    if ((le16(inode) & S_IFMT) != S_IFDIR)
        return EFI_INVALID_PARAMETER;
    void *data;
    UINTN size;
    st = read_inode_data(fs, inode, &data, &size);
    if (EFI_ERROR(st))
        return st;
    const UINT8 *p = data;
    UINTN off = 0;
    while (off + 8 <= size) {
        UINT32 ino = le32(p + off);
        UINT16 rec_len = le16(p + off + 4);
        UINT8 name_len = p[off + 6], type = p[off + 7];
        if (rec_len < 8 || off + rec_len > size || 8u + name_len > rec_len) {
            st = EFI_VOLUME_CORRUPTED;
            break;
        }
        if (ino && name_len && fn(ctx, (const char *)p + off + 8, name_len, ino, type))
            break;
        off += rec_len;
    }
    ext4_free(data, size);
    return st;
}

typedef struct {
    const char *name;
    UINTN len;
    UINT32 ino;
} find_ctx;

static int find_cb(void *ctx, const char *name, UINTN len, UINT32 ino, int type) {
    find_ctx *f = ctx;
    (void)type;
    if (len == f->len && memcmp(name, f->name, len) == 0) {
        f->ino = ino;
        return 1;
    }
    return 0;
}

/* Target of a symlink inode into out (NUL-terminated). */
static EFI_STATUS read_link(ext4_fs *fs, const UINT8 *inode, char *out, UINTN cap) {
    UINT64 sz = inode_size_bytes(inode);
    if (sz + 1 > cap)
        return EFI_BUFFER_TOO_SMALL;
    if (sz < 60 && !(le32(inode + 0x20) & (EXTENTS_FL | INLINE_DATA_FL))) {
        memcpy(out, inode + 0x28, (UINTN)sz);
        out[sz] = 0;
        return EFI_SUCCESS;
    }
    void *data;
    UINTN n;
    EFI_STATUS st = read_inode_data(fs, inode, &data, &n);
    if (EFI_ERROR(st))
        return st;
    memcpy(out, data, n);
    out[n] = 0;
    ext4_free(data, n);
    return EFI_SUCCESS;
}

EFI_STATUS ext4_lookup(ext4_fs *fs, const char *path, UINT32 *ino_out) {
    char cur[PATH_MAX_LEN], next[PATH_MAX_LEN], link[PATH_MAX_LEN];
    int links = 0;
    if (cb_strlcpy(cur, path, sizeof(cur)) >= sizeof(cur))
        return EFI_BUFFER_TOO_SMALL;
restart:;
    UINT32 ino = EXT4_ROOT_INO;
    const char *p = cur;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && *p != '/')
            p++;
        UINTN len = (UINTN)(p - start);
        UINT8 inode[1024];
        EFI_STATUS st = read_inode(fs, ino, inode);
        if (EFI_ERROR(st))
            return st;
        if ((le16(inode) & S_IFMT) != S_IFDIR)
            return EFI_NOT_FOUND;
        find_ctx f = {start, len, 0};
        st = ext4_readdir(fs, ino, find_cb, &f);
        if (EFI_ERROR(st))
            return st;
        if (!f.ino)
            return EFI_NOT_FOUND;
        st = read_inode(fs, f.ino, inode);
        if (EFI_ERROR(st))
            return st;
        if ((le16(inode) & S_IFMT) == S_IFLNK) {
            if (++links > MAX_LINKS)
                return EFI_NOT_FOUND;
            st = read_link(fs, inode, link, sizeof(link));
            if (EFI_ERROR(st))
                return st;
            next[0] = 0;
            if (link[0] != '/') {
                /* relative: the directory part of what we walked so far */
                UINTN dirlen = (UINTN)(start - cur);
                if (dirlen + 1 > sizeof(next))
                    return EFI_BUFFER_TOO_SMALL;
                memcpy(next, cur, dirlen);
                next[dirlen] = 0;
                cb_strlcat(next, "/", sizeof(next));
            }
            cb_strlcat(next, link, sizeof(next));
            if (cb_strlcat(next, p, sizeof(next)) >= sizeof(next))
                return EFI_BUFFER_TOO_SMALL;
            cb_strlcpy(cur, next, sizeof(cur));
            goto restart;
        }
        ino = f.ino;
    }
    *ino_out = ino;
    return EFI_SUCCESS;
}

static int is_regular(ext4_fs *fs, const char *path) {
    UINT32 ino;
    int type = 0;
    if (EFI_ERROR(ext4_lookup(fs, path, &ino)) || EFI_ERROR(ext4_stat(fs, ino, NULL, &type)))
        return 0;
    return type == EXT4_FT_REG;
}

typedef struct {
    ext4_fs *fs;
    const char *dir; /* "/boot" or "" */
    char best[128];
} kernel_scan;

static int kernel_cb(void *ctx, const char *name, UINTN len, UINT32 ino, int type) {
    kernel_scan *k = ctx;
    char v[128], path[PATH_MAX_LEN];
    (void)ino;
    (void)type;
    if (len <= 8 || len >= 8 + sizeof(v) || memcmp(name, "vmlinuz-", 8) != 0)
        return 0;
    memcpy(v, name + 8, len - 8);
    v[len - 8] = 0;
    if (k->best[0] && cb_version_cmp(v, k->best) <= 0)
        return 0;
    cb_strlcpy(path, k->dir, sizeof(path));
    cb_strlcat(path, "/vmlinuz-", sizeof(path));
    cb_strlcat(path, v, sizeof(path));
    if (!is_regular(k->fs, path))
        return 0;
    cb_strlcpy(path, k->dir, sizeof(path));
    cb_strlcat(path, "/initrd.img-", sizeof(path));
    cb_strlcat(path, v, sizeof(path));
    if (!is_regular(k->fs, path))
        return 0;
    cb_strlcpy(k->best, v, sizeof(k->best));
    return 0;
}

static EFI_STATUS scan_dir(ext4_fs *fs, const char *dir, char *kernel, UINTN kcap,
                           char *initrd, UINTN icap, char *version, UINTN vcap) {
    kernel_scan k = {fs, dir, {0}};
    UINT32 ino;
    if (EFI_ERROR(ext4_lookup(fs, dir[0] ? dir : "/", &ino)))
        return EFI_NOT_FOUND;
    EFI_STATUS st = ext4_readdir(fs, ino, kernel_cb, &k);
    if (EFI_ERROR(st))
        return st;
    if (!k.best[0])
        return EFI_NOT_FOUND;
    cb_strlcpy(kernel, dir, kcap);
    cb_strlcat(kernel, "/vmlinuz-", kcap);
    cb_strlcat(kernel, k.best, kcap);
    cb_strlcpy(initrd, dir, icap);
    cb_strlcat(initrd, "/initrd.img-", icap);
    cb_strlcat(initrd, k.best, icap);
    cb_strlcpy(version, k.best, vcap);
    return EFI_SUCCESS;
}

EFI_STATUS ext4_find_kernel(ext4_fs *fs, char *kernel, UINTN kcap, char *initrd, UINTN icap,
                            char *version, UINTN vcap) {
    if (!EFI_ERROR(scan_dir(fs, "/boot", kernel, kcap, initrd, icap, version, vcap)))
        return EFI_SUCCESS;
    static const char *const pairs[][2] = {{"/vmlinuz", "/initrd.img"},
                                           {"/boot/vmlinuz", "/boot/initrd.img"}};
    for (UINTN i = 0; i < 2; i++) {
        if (is_regular(fs, pairs[i][0]) && is_regular(fs, pairs[i][1])) {
            cb_strlcpy(kernel, pairs[i][0], kcap);
            cb_strlcpy(initrd, pairs[i][1], icap);
            if (vcap)
                version[0] = 0;
            return EFI_SUCCESS;
        }
    }
    return scan_dir(fs, "", kernel, kcap, initrd, icap, version, vcap);
}
