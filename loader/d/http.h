/* Path D's network: bring a NIC up with the firmware's own stack (ConnectController on every
 * handle, DHCP through EFI_IP4_CONFIG2_PROTOCOL) and HTTP GET through
 * EFI_HTTP_SERVICE_BINDING_PROTOCOL / EFI_HTTP_PROTOCOL with our own headers. */
#ifndef CB_D_HTTP_H
#define CB_D_HTTP_H

#include "../include/efi.h"

typedef struct {
    EFI_HANDLE nic;            /* the handle carrying the HTTP service binding */
    void *http_sb;             /* EFI_SERVICE_BINDING_PROTOCOL * */
    UINT8 address[4];          /* from DHCP */
    UINT8 netmask[4];
    char address_text[20];     /* "10.0.2.15/24" */
    char error[200];           /* why cb_net_up failed (also printed) */
} cb_net;

typedef struct {
    int status;                /* numeric HTTP status (200, 404, …); 0 if unknown */
    UINT64 content_length;     /* CB_HTTP_NO_LENGTH if the server sent none */
    char content_type[128];
    char location[256];        /* for redirects */
} cb_http_response;

#define CB_HTTP_NO_LENGTH ((UINT64)-1)

/* Called with every chunk as it lands in the caller's buffer (hash it, print progress).
 * Returning non-zero aborts the transfer (the callback printed why). */
typedef int (*cb_http_chunk_fn)(void *ctx, const UINT8 *data, UINTN n, UINT64 total_so_far);

/* Connect every controller, find a NIC with HTTP, run DHCP on it (timeout_ms). Prints one
 * error line on failure. */
EFI_STATUS cb_net_up(cb_net *net, UINT32 timeout_ms);

/* GET url with the given Accept header (NULL for none) into buf (cap bytes). *got = body
 * bytes stored. A body longer than cap is refused with EFI_BUFFER_TOO_SMALL (no error line:
 * the caller knows what the limit means). Transport failures print one error line; an HTTP
 * status other than 2xx is returned in resp with EFI_SUCCESS (the caller judges it, the body
 * holds the server's error text up to cap). */
EFI_STATUS cb_http_get(cb_net *net, const char *url, const char *accept, void *buf, UINT64 cap,
                       UINT64 *got, cb_http_response *resp, cb_http_chunk_fn chunk, void *ctx,
                       UINT32 timeout_ms);

/* The HTTP status number of an EFI_HTTP_STATUS_CODE enumerator (0 for unknown). Pure C. */
int cb_http_status_number(int efi_status_code);

#endif
