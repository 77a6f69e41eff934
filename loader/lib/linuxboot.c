/* cloudboot loader: shared Linux boot (see linuxboot.h). */
#include "linuxboot.h"
#include "console.h"
#include "fw.h"
#include "libc.h"
#include "ucs2.h"

/* The initrd handle: vendor media node + end node, byte-packed as the spec lays them out. */
#pragma pack(push, 1)
typedef struct {
    VENDOR_DEVICE_PATH vendor;
    EFI_DEVICE_PATH_PROTOCOL end;
} initrd_path_t;
#pragma pack(pop)

static initrd_path_t initrd_path = {
    {{MEDIA_DEVICE_PATH, MEDIA_VENDOR_DP, {sizeof(VENDOR_DEVICE_PATH), 0}},
     LINUX_EFI_INITRD_MEDIA_GUID},
    {END_DEVICE_PATH_TYPE, END_ENTIRE_DEVICE_PATH_SUBTYPE, {4, 0}},
};

static const void *initrd_data;
static UINTN initrd_len;

static EFI_STATUS EFIAPI initrd_load(EFI_LOAD_FILE2_PROTOCOL *This,
                                     EFI_DEVICE_PATH_PROTOCOL *FilePath, BOOLEAN BootPolicy,
                                     UINTN *BufferSize, void *Buffer) {
    (void)This;
    (void)FilePath;
    if (BootPolicy)
        return EFI_UNSUPPORTED;
    if (!BufferSize)
        return EFI_INVALID_PARAMETER;
    if (!Buffer || *BufferSize < initrd_len) {
        *BufferSize = initrd_len;
        return EFI_BUFFER_TOO_SMALL;
    }
    memcpy(Buffer, initrd_data, initrd_len);
    *BufferSize = initrd_len;
    return EFI_SUCCESS;
}

static EFI_LOAD_FILE2_PROTOCOL initrd_lf2 = {initrd_load};

EFI_STATUS cb_linux_boot(const void *kernel, UINTN kernel_size, const void *initrd,
                         UINTN initrd_size, const CHAR16 *cmdline) {
    UINT16 machine = 0;
    EFI_STATUS st;
    EFI_HANDLE initrd_handle = NULL, image = NULL;

    if (!cb_is_efi_image(kernel, kernel_size, &machine)) {
        if (machine)
            return cb_fatal("target-kernel", EFI_UNSUPPORTED,
                           "kernel is an EFI image for machine 0x%x, this loader runs on 0x%x",
                           machine, cb_native_machine());
        return cb_fatal("target-kernel", EFI_UNSUPPORTED,
                       "kernel is not an EFI image (no PE32+ header in %lu bytes): it needs "
                       "CONFIG_EFI_STUB",
                       (UINT64)kernel_size);
    }
    if (initrd && initrd_size) {
        initrd_data = initrd;
        initrd_len = initrd_size;
        st = cb_bs->InstallProtocolInterface(&initrd_handle, &cb_guid_device_path,
                                             EFI_NATIVE_INTERFACE, &initrd_path);
        if (EFI_ERROR(st))
            return cb_fatal("handoff", st,
                            "cannot install the initrd device path (another LoadFile2 initrd "
                            "already published?)");
        st = cb_bs->InstallProtocolInterface(&initrd_handle, &cb_guid_load_file2,
                                             EFI_NATIVE_INTERFACE, &initrd_lf2);
        if (EFI_ERROR(st)) {
            cb_bs->UninstallProtocolInterface(initrd_handle, &cb_guid_device_path, &initrd_path);
            return cb_fatal("handoff", st, "cannot install LoadFile2 for the initrd");
        }
    }
    st = cb_bs->LoadImage(FALSE, cb_image, NULL, (void *)kernel, kernel_size, &image);
    if (EFI_ERROR(st)) {
        cb_fatal("handoff", st, "LoadImage of the kernel (%lu bytes) failed", (UINT64)kernel_size);
        goto out;
    }
    if (cmdline) {
        EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
        st = cb_bs->HandleProtocol(image, &cb_guid_loaded_image, (void **)&li);
        if (EFI_ERROR(st)) {
            cb_fatal("handoff", st, "the loaded kernel has no EFI_LOADED_IMAGE_PROTOCOL");
            cb_bs->UnloadImage(image);
            goto out;
        }
        li->LoadOptions = (void *)cmdline;
        li->LoadOptionsSize = (UINT32)((ucs2_len(cmdline) + 1) * sizeof(CHAR16));
    }
    cb_log("starting the kernel (%lu bytes, initrd %lu bytes)", (UINT64)kernel_size,
           (UINT64)initrd_size);
    cb_event("loader-handoff");
    st = cb_bs->StartImage(image, NULL, NULL);
    cb_fatal("handoff", EFI_ERROR(st) ? st : EFI_LOAD_ERROR, "the kernel returned to the loader");
    if (!EFI_ERROR(st))
        st = EFI_LOAD_ERROR;
out:
    if (initrd_handle) {
        cb_bs->UninstallProtocolInterface(initrd_handle, &cb_guid_load_file2, &initrd_lf2);
        cb_bs->UninstallProtocolInterface(initrd_handle, &cb_guid_device_path, &initrd_path);
    }
    return st;
}
