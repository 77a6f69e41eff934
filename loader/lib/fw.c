/* cloudboot loader: firmware handles, GUIDs and the allocator (see fw.h, libc.h). */
#include "fw.h"
#include "libc.h"

EFI_HANDLE cb_image;
EFI_SYSTEM_TABLE *cb_st;
EFI_BOOT_SERVICES *cb_bs;
EFI_RUNTIME_SERVICES *cb_rt;

EFI_GUID cb_guid_loaded_image = EFI_LOADED_IMAGE_PROTOCOL_GUID;
EFI_GUID cb_guid_device_path = EFI_DEVICE_PATH_PROTOCOL_GUID;
EFI_GUID cb_guid_load_file2 = EFI_LOAD_FILE2_PROTOCOL_GUID;
EFI_GUID cb_guid_simple_fs = EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID;
EFI_GUID cb_guid_file_info = EFI_FILE_INFO_ID;
EFI_GUID cb_guid_block_io = EFI_BLOCK_IO_PROTOCOL_GUID;
EFI_GUID cb_guid_disk_io = EFI_DISK_IO_PROTOCOL_GUID;
EFI_GUID cb_guid_global_var = EFI_GLOBAL_VARIABLE_GUID;
EFI_GUID cb_guid_vendor = CLOUDBOOT_VENDOR_GUID;
EFI_GUID cb_guid_linux_initrd = LINUX_EFI_INITRD_MEDIA_GUID;

void cb_init(EFI_HANDLE image, EFI_SYSTEM_TABLE *st) {
    cb_image = image;
    cb_st = st;
    cb_bs = st->BootServices;
    cb_rt = st->RuntimeServices;
    cb_bs->SetWatchdogTimer(0, 0, 0, NULL);
}

EFI_LOADED_IMAGE_PROTOCOL *cb_loaded_image(void) {
    void *li = NULL;
    if (EFI_ERROR(cb_bs->HandleProtocol(cb_image, &cb_guid_loaded_image, &li)))
        return NULL;
    return li;
}

int cb_guid_eq(const EFI_GUID *a, const EFI_GUID *b) { return memcmp(a, b, sizeof(*a)) == 0; }

void *cb_alloc(UINTN size) {
    void *p = NULL;
    if (EFI_ERROR(cb_bs->AllocatePool(EfiLoaderData, size ? size : 1, &p)))
        return NULL;
    return p;
}

void cb_free(void *p) {
    if (p)
        cb_bs->FreePool(p);
}

void *cb_alloc_pages(UINTN size) {
    EFI_PHYSICAL_ADDRESS addr = 0;
    UINTN pages = (size + 4095) / 4096;
    if (EFI_ERROR(cb_bs->AllocatePages(AllocateAnyPages, EfiLoaderData, pages ? pages : 1,
                                       &addr)))
        return NULL;
    return (void *)(UINTN)addr;
}

void cb_free_pages(void *p, UINTN size) {
    if (p) {
        UINTN pages = (size + 4095) / 4096;
        cb_bs->FreePages((EFI_PHYSICAL_ADDRESS)(UINTN)p, pages ? pages : 1);
    }
}
