/* cloudboot loader: the firmware handles every part of the loader uses. */
#ifndef CLOUDBOOT_FW_H
#define CLOUDBOOT_FW_H
#include "../include/efi.h"

extern EFI_HANDLE cb_image;            /* our own image handle */
extern EFI_SYSTEM_TABLE *cb_st;        /* the system table efi_main got */
extern EFI_BOOT_SERVICES *cb_bs;       /* cb_st->BootServices */
extern EFI_RUNTIME_SERVICES *cb_rt;    /* cb_st->RuntimeServices */

/* Call first in efi_main: stores the handles above and disables the 5-minute watchdog
 * (a TCG boot reading a large initrd can take a while; the kernel re-arms nothing). */
void cb_init(EFI_HANDLE image, EFI_SYSTEM_TABLE *st);

/* Our loaded image (for DeviceHandle = the volume we were started from, LoadOptions). */
EFI_LOADED_IMAGE_PROTOCOL *cb_loaded_image(void);

/* The GUIDs as variables (the firmware wants non-const pointers). */
extern EFI_GUID cb_guid_loaded_image, cb_guid_device_path, cb_guid_load_file2,
    cb_guid_simple_fs, cb_guid_file_info, cb_guid_block_io, cb_guid_disk_io,
    cb_guid_global_var, cb_guid_vendor, cb_guid_linux_initrd;

/* 1 if the two GUIDs are equal. */
int cb_guid_eq(const EFI_GUID *a, const EFI_GUID *b);

#endif
