/* cloudboot loader: a read-only ext4 (and ext2/ext3 with extents absent: no) reader.
 *
 * Pure C over a read callback, so the host tests run it against a real `mkfs.ext4 -d` image
 * and the firmware build over EFI_DISK_IO.  Reads: the superblock, group descriptors (32- and
 * 64-byte), inodes, extent trees of any depth (uninitialised extents read as zeros), linear
 * directories (htree directories are read linearly, which their layout allows), fast and slow
 * symlinks.  Files without extents (ext2/3 block maps) and inline data are refused with
 * EFI_UNSUPPORTED. */
#ifndef CLOUDBOOT_EXT4_H
#define CLOUDBOOT_EXT4_H
#include "../include/efi.h"

/* Read size bytes at byte offset into buf; EFI_SUCCESS or an error. */
typedef EFI_STATUS (*ext4_read_fn)(void *ctx, UINT64 offset, UINTN size, void *buf);

typedef struct {
    ext4_read_fn read;
    void *ctx;
    UINT32 block_size;
    UINT32 inode_size;
    UINT32 inodes_per_group;
    UINT32 desc_size;
    UINT64 gdt_offset; /* byte offset of the group descriptor table */
    UINT32 groups;
    UINT32 incompat;
    UINT8 uuid[16];
    char label[17];
} ext4_fs;

#define EXT4_ROOT_INO 2
#define EXT4_FT_REG 1
#define EXT4_FT_DIR 2
#define EXT4_FT_SYMLINK 7

/* Check the superblock (magic 0xEF53) and fill fs.  EFI_NOT_FOUND when it is not ext2/3/4,
 * EFI_UNSUPPORTED for features we cannot read (compression, a journal device). */
EFI_STATUS ext4_open(ext4_fs *fs, ext4_read_fn read, void *ctx);

/* The file system UUID as text "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (37 bytes with NUL). */
void ext4_uuid_text(const ext4_fs *fs, char out[37]);

/* Resolve an absolute path ("/boot/vmlinuz") to an inode number, following symlinks
 * (relative and absolute, inside this file system, at most 8).  EFI_NOT_FOUND if absent. */
EFI_STATUS ext4_lookup(ext4_fs *fs, const char *path, UINT32 *ino);

/* Size and type (EXT4_FT_*) of an inode. */
EFI_STATUS ext4_stat(ext4_fs *fs, UINT32 ino, UINT64 *size, int *type);

/* Read a whole regular file into a new page buffer (*data, *size; free it with
 * ext4_free(*data, *size)).  Each extent is read with one call of the read callback. */
EFI_STATUS ext4_read_file(ext4_fs *fs, UINT32 ino, void **data, UINTN *size);
void ext4_free(void *data, UINTN size);

/* Call fn(ctx, name, name_len, ino, file_type) for each entry of directory dir_ino
 * ("." and ".." included).  fn returns nonzero to stop. */
typedef int (*ext4_dir_fn)(void *ctx, const char *name, UINTN name_len, UINT32 ino, int type);
EFI_STATUS ext4_readdir(ext4_fs *fs, UINT32 dir_ino, ext4_dir_fn fn, void *ctx);

/* Find the newest kernel in this file system (as a distro root, or a separate /boot):
 * /boot/vmlinuz-<v> with /boot/initrd.img-<v> present, newest <v> by dpkg version order;
 * else /vmlinuz + /initrd.img (symlinks followed), then /boot/vmlinuz + /boot/initrd.img;
 * else vmlinuz-<v> + initrd.img-<v> at the top (a /boot partition).  Writes absolute paths
 * (kernel, initrd) and the version (empty when unknown).  EFI_NOT_FOUND when none. */
EFI_STATUS ext4_find_kernel(ext4_fs *fs, char *kernel, UINTN kcap, char *initrd, UINTN icap,
                            char *version, UINTN vcap);

#endif
