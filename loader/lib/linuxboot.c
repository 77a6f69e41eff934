/* cloudboot loader: shared Linux boot (see linuxboot.h). */
#include "linuxboot.h"
#include "console.h"
#include "fw.h"
#include "libc.h"
#include "ucs2.h"

/* The optional header a kernel for this machine carries (see peimage.c). */
#if defined(__arm__)
#define PE_HEADER_KIND "PE32"
#else
#define PE_HEADER_KIND "PE32+"
#endif

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

#if defined(__arm__)
/* armv7: room behind the loaded zImage.
 *
 * The armhf EFI stub (Linux 6.1) leaves the zImage where LoadImage put it, and after
 * ExitBootServices its decompressor runs there; arch/arm/boot/compressed/head.S puts its
 * malloc arena (64 KiB, 128 KiB in newer kernels) "above the relocated stack", past the end
 * that the PE header's SizeOfImage announces.  Whatever lies in those pages is overwritten
 * before the kernel reads it.  Measured on AAVMF32 with bookworm's 6.1 armmp: the image
 * ended at 0x7ac19800, the next pages were EfiLoaderData pool, and the stub's own
 * LINUX_EFI_MEMRESERVE table landed there: the kernel (earlycon) then walked garbage in
 * efi_config_parse_tables (memblock_reserve of random ranges) and hung silently.  With the
 * room below reserved the same kernel boots.
 *
 * So after LoadImage the pages behind the image must be ours and unused: allocate them
 * (SLACK_PAGES) at that address.  When something already sits there, unload the image,
 * keep its pages allocated as a blocker and load again: the firmware's top-down allocator
 * puts the next copy lower, typically right under the blocker, which is ours and unused,
 * so it serves as the room.  Blockers and room stay allocated (EfiLoaderData: the kernel
 * gets the memory back) unless the boot fails. */
#define SLACK_PAGES 256u /* 1 MiB: stack + malloc arena with a wide margin */
#define MAX_TRIES 8

typedef struct {
    EFI_PHYSICAL_ADDRESS base;
    UINTN pages;
} page_run;

static page_run arm_held[MAX_TRIES + 1];
static UINTN arm_held_count;

static void arm_release(void) {
    while (arm_held_count) {
        arm_held_count--;
        cb_bs->FreePages(arm_held[arm_held_count].base, arm_held[arm_held_count].pages);
    }
}

static int arm_held_covers(EFI_PHYSICAL_ADDRESS start, UINTN pages) {
    for (UINTN i = 0; i < arm_held_count; i++)
        if (start >= arm_held[i].base &&
            start + (UINT64)pages * 4096 <= arm_held[i].base + (UINT64)arm_held[i].pages * 4096)
            return 1;
    return 0;
}

/* LoadImage with the room above; *reported is set when this already printed the failure. */
static EFI_STATUS arm_load_image(const void *kernel, UINTN kernel_size, EFI_HANDLE *image,
                                 int *reported) {
    int attempt;
    for (attempt = 0; attempt < MAX_TRIES; attempt++) {
        EFI_STATUS st = cb_bs->LoadImage(FALSE, cb_image, NULL, (void *)kernel, kernel_size,
                                         image);
        if (EFI_ERROR(st))
            return st;
        EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
        st = cb_bs->HandleProtocol(*image, &cb_guid_loaded_image, (void **)&li);
        if (EFI_ERROR(st))
            return EFI_SUCCESS; /* the caller reports the missing protocol */
        EFI_PHYSICAL_ADDRESS base = (EFI_PHYSICAL_ADDRESS)(UINTN)li->ImageBase;
        UINTN pages = (UINTN)((li->ImageSize + 4095) >> 12);
        EFI_PHYSICAL_ADDRESS room = base + (UINT64)pages * 4096;
        int held = arm_held_covers(room, SLACK_PAGES); /* a blocker of an earlier try */
        if (held || !EFI_ERROR(cb_bs->AllocatePages(AllocateAddress, EfiLoaderData,
                                                    SLACK_PAGES, &room))) {
            if (!held) {
                arm_held[arm_held_count].base = room;
                arm_held[arm_held_count++].pages = SLACK_PAGES;
            }
            cb_log("kernel image at 0x%lx (%lu bytes), 1 MiB behind it reserved for the "
                   "zImage decompressor (load %d)",
                   (UINT64)base, (UINT64)li->ImageSize, attempt + 1);
            return EFI_SUCCESS;
        }
        /* Occupied: move the image elsewhere and keep its old place as a blocker. */
        cb_bs->UnloadImage(*image);
        *image = NULL;
        EFI_PHYSICAL_ADDRESS blocker = base;
        if (EFI_ERROR(cb_bs->AllocatePages(AllocateAddress, EfiLoaderData, pages, &blocker))) {
            attempt++;
            break;
        }
        arm_held[arm_held_count].base = blocker;
        arm_held[arm_held_count++].pages = pages;
    }
    *reported = 1;
    return cb_fatal("handoff", EFI_OUT_OF_RESOURCES,
                    "no free memory behind the loaded kernel image for the zImage decompressor "
                    "(%d loads tried)",
                    attempt);
}
#endif

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
                       "kernel is not an EFI image (no " PE_HEADER_KIND " header in %lu bytes): it "
                       "needs CONFIG_EFI_STUB",
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
#if defined(__arm__)
    int reported = 0;
    st = arm_load_image(kernel, kernel_size, &image, &reported);
    if (EFI_ERROR(st) && reported)
        goto out;
#else
    st = cb_bs->LoadImage(FALSE, cb_image, NULL, (void *)kernel, kernel_size, &image);
#endif
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
#if defined(__arm__)
    arm_release();
#endif
    if (initrd_handle) {
        cb_bs->UninstallProtocolInterface(initrd_handle, &cb_guid_load_file2, &initrd_lf2);
        cb_bs->UninstallProtocolInterface(initrd_handle, &cb_guid_device_path, &initrd_path);
    }
    return st;
}
