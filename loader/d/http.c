/* HTTP GET over the firmware's network stack (UEFI 2.10 §28.5, §29.6). */
#include "http.h"
#include "efinet.h"
#include "../lib/console.h"
#include "../lib/fw.h"
#include "../lib/libc.h"

static EFI_GUID guid_http_sb = EFI_HTTP_SERVICE_BINDING_PROTOCOL_GUID;
static EFI_GUID guid_http = EFI_HTTP_PROTOCOL_GUID;
static EFI_GUID guid_ip4cfg2 = EFI_IP4_CONFIG2_PROTOCOL_GUID;

int cb_http_status_number(int code)
{
    static const short numbers[] = {
        0,   100, 101, 200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304,
        305, 307, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412,
        413, 414, 415, 416, 417, 500, 501, 502, 503, 504, 505, 308, 429,
    };
    if (code < 0 || (unsigned)code >= sizeof numbers / sizeof numbers[0])
        return 0;
    return numbers[code];
}

/* A relative timer in milliseconds; check it with cb_bs->CheckEvent (EFI_SUCCESS = expired). */
static EFI_EVENT deadline(UINT32 ms)
{
    EFI_EVENT ev = NULL;
    if (EFI_ERROR(cb_bs->CreateEvent(EVT_TIMER, 0, NULL, NULL, &ev)))
        return NULL;
    cb_bs->SetTimer(ev, TimerRelative, (UINT64)ms * 10000);
    return ev;
}

static int expired(EFI_EVENT ev) { return ev == NULL || cb_bs->CheckEvent(ev) == EFI_SUCCESS; }

static void EFIAPI set_flag(EFI_EVENT ev, void *ctx)
{
    (void)ev;
    *(volatile BOOLEAN *)ctx = TRUE;
}

EFI_STATUS cb_net_up(cb_net *net, UINT32 timeout_ms)
{
    EFI_HANDLE *handles = NULL;
    UINTN count = 0;
    EFI_STATUS st;

    memset(net, 0, sizeof *net);
    /* The firmware binds its network drivers (SNP, MNP, IP4, TCP4, HTTP, …) only to the
     * devices it was asked to boot from: connect everything, recursively. */
    st = cb_bs->LocateHandleBuffer(AllHandles, NULL, NULL, &count, &handles);
    if (EFI_ERROR(st)) {
        cb_strlcpy(net->error, "network: cannot list the firmware's handles", sizeof net->error);
        return cb_fail(st, "%s", net->error);
    }
    for (UINTN i = 0; i < count; i++)
        cb_bs->ConnectController(handles[i], NULL, NULL, TRUE);
    cb_bs->FreePool(handles);

    handles = NULL;
    count = 0;
    st = cb_bs->LocateHandleBuffer(ByProtocol, &guid_http_sb, NULL, &count, &handles);
    if (EFI_ERROR(st) || count == 0) {
        cb_strlcpy(net->error, "network: the firmware offers no HTTP service (no NIC, no "
                   "network stack, or on trixie's OVMF no RNG: add -device virtio-rng-pci)",
                   sizeof net->error);
        return cb_fail(EFI_ERROR(st) ? st : EFI_NOT_FOUND, "%s", net->error);
    }
    /* The first NIC that gets a DHCP address. */
    EFI_EVENT until = deadline(timeout_ms);
    EFI_STATUS last = EFI_NOT_FOUND;
    for (;;) {
        for (UINTN i = 0; i < count; i++) {
            EFI_IP4_CONFIG2_PROTOCOL *cfg = NULL;
            if (EFI_ERROR(cb_bs->HandleProtocol(handles[i], &guid_ip4cfg2, (void **)&cfg)))
                continue;
            EFI_IP4_CONFIG2_POLICY policy = Ip4Config2PolicyDhcp, cur = Ip4Config2PolicyMax;
            UINTN sz = sizeof cur;
            if (EFI_ERROR(cfg->GetData(cfg, Ip4Config2DataTypePolicy, &sz, &cur)) ||
                cur != Ip4Config2PolicyDhcp) {
                last = cfg->SetData(cfg, Ip4Config2DataTypePolicy, sizeof policy, &policy);
                if (EFI_ERROR(last) && last != EFI_NOT_READY)
                    continue;
            }
            UINT8 buf[512];
            EFI_IP4_CONFIG2_INTERFACE_INFO *info = (EFI_IP4_CONFIG2_INTERFACE_INFO *)buf;
            sz = sizeof buf;
            last = cfg->GetData(cfg, Ip4Config2DataTypeInterfaceInfo, &sz, buf);
            if (EFI_ERROR(last))
                continue;
            UINT8 *a = info->StationAddress.Addr;
            if (a[0] | a[1] | a[2] | a[3]) {
                void *sb = NULL;
                if (EFI_ERROR(cb_bs->HandleProtocol(handles[i], &guid_http_sb, &sb)))
                    continue;
                net->nic = handles[i];
                net->http_sb = sb;
                memcpy(net->address, a, 4);
                memcpy(net->netmask, info->SubnetMask.Addr, 4);
                int prefix = 0;
                for (int b = 0; b < 4; b++)
                    for (int k = 7; k >= 0; k--)
                        prefix += (net->netmask[b] >> k) & 1;
                cb_snprintf(net->address_text, sizeof net->address_text, "%u.%u.%u.%u/%d",
                            a[0], a[1], a[2], a[3], prefix);
                cb_bs->FreePool(handles);
                if (until)
                    cb_bs->CloseEvent(until);
                return EFI_SUCCESS;
            }
        }
        if (expired(until))
            break;
        cb_bs->Stall(50000);
    }
    cb_bs->FreePool(handles);
    if (until)
        cb_bs->CloseEvent(until);
    cb_snprintf(net->error, sizeof net->error, "network: no DHCP address after %u ms on %lu "
                "NIC(s) (last: %s)", timeout_ms, (UINT64)count, cb_status_name(last));
    return cb_fail(EFI_TIMEOUT, "%s", net->error);
}

/* The TCP outcomes EDK2 reports (UEFI 2.10 Appendix D) that the shared status names lack. */
static const char *net_status(EFI_STATUS st)
{
    if (st == EFIERR(104))
        return "EFI_CONNECTION_FIN: the server closed the connection";
    if (st == EFIERR(105))
        return "EFI_CONNECTION_RESET: connection reset, nothing listens there";
    if (st == EFIERR(106))
        return "EFI_CONNECTION_REFUSED";
    return cb_status_name(st);
}

/* Wait for a token's event flag while polling; EFI_TIMEOUT when the deadline passes. */
static EFI_STATUS wait_token(EFI_HTTP_PROTOCOL *http, EFI_HTTP_TOKEN *tok, volatile BOOLEAN *done,
                             EFI_EVENT until)
{
    while (!*done) {
        if (expired(until)) {
            http->Cancel(http, tok);
            return EFI_TIMEOUT;
        }
        http->Poll(http);
    }
    return tok->Status;
}

static int ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a, y = *b;
        if (x >= 'A' && x <= 'Z')
            x = (char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (char)(y + 32);
        if (x != y)
            return 0;
    }
    return *a == *b;
}

static UINT64 parse_u64(const char *s)
{
    UINT64 v = 0;
    int any = 0;
    while (*s == ' ')
        s++;
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (UINT64)(*s - '0');
        any = 1;
    }
    return any ? v : CB_HTTP_NO_LENGTH;
}

/* The "host[:port]" of an http(s):// URL into out. */
static int url_host(const char *url, char *out, UINTN cap)
{
    const char *p = url;
    if (cb_startswith(p, "http://"))
        p += 7;
    else if (cb_startswith(p, "https://"))
        p += 8;
    else
        return -1;
    UINTN n = 0;
    while (p[n] && p[n] != '/')
        n++;
    if (n == 0 || n + 1 > cap)
        return -1;
    memcpy(out, p, n);
    out[n] = 0;
    return 0;
}

EFI_STATUS cb_http_get(cb_net *net, const char *url, const char *accept, void *buf, UINT64 cap,
                       UINT64 *got, cb_http_response *resp, cb_http_chunk_fn chunk, void *ctx,
                       UINT32 timeout_ms)
{
    EFI_SERVICE_BINDING_PROTOCOL *sb = net->http_sb;
    EFI_HANDLE child = NULL;
    EFI_HTTP_PROTOCOL *http = NULL;
    EFI_EVENT ev = NULL, until = NULL;
    volatile BOOLEAN done = FALSE;
    EFI_STATUS st;
    static CHAR16 wurl[1024];
    char host[160];

    *got = 0;
    memset(resp, 0, sizeof *resp);
    resp->content_length = CB_HTTP_NO_LENGTH;
    if (url_host(url, host, sizeof host))
        return cb_fail(EFI_INVALID_PARAMETER, "bad URL %s", url);
    UINTN ulen = strlen(url);
    if (ulen + 1 > sizeof wurl / sizeof wurl[0])
        return cb_fail(EFI_INVALID_PARAMETER, "URL too long (%lu bytes): %s", (UINT64)ulen, url);
    for (UINTN i = 0; i <= ulen; i++)
        wurl[i] = (CHAR16)(unsigned char)url[i];

    st = sb->CreateChild(sb, &child);
    if (EFI_ERROR(st))
        return cb_fail(st, "HTTP: cannot create an HTTP child on the NIC");
    st = cb_bs->HandleProtocol(child, &guid_http, (void **)&http);
    if (EFI_ERROR(st)) {
        cb_fail(st, "HTTP: the child has no EFI_HTTP_PROTOCOL");
        goto out;
    }
    EFI_HTTPv4_ACCESS_POINT ap;
    memset(&ap, 0, sizeof ap);
    ap.UseDefaultAddress = TRUE;
    EFI_HTTP_CONFIG_DATA cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.HttpVersion = HttpVersion11;
    cfg.TimeOutMillisec = timeout_ms;
    cfg.LocalAddressIsIPv6 = FALSE;
    cfg.AccessPoint.IPv4Node = &ap;
    st = http->Configure(http, &cfg);
    if (EFI_ERROR(st)) {
        cb_fail(st, "HTTP: Configure failed");
        goto out;
    }
    st = cb_bs->CreateEvent(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, set_flag, (void *)&done, &ev);
    if (EFI_ERROR(st)) {
        cb_fail(st, "HTTP: CreateEvent failed");
        goto out;
    }
    until = deadline(timeout_ms);

    /* Request */
    EFI_HTTP_HEADER hdrs[3];
    UINTN nh = 0;
    hdrs[nh].FieldName = "Host";
    hdrs[nh++].FieldValue = host;
    hdrs[nh].FieldName = "User-Agent";
    hdrs[nh++].FieldValue = "cloudboot-loader-d/1";
    if (accept) {
        hdrs[nh].FieldName = "Accept";
        hdrs[nh++].FieldValue = (char *)accept;
    }
    EFI_HTTP_REQUEST_DATA req = {HttpMethodGet, wurl};
    EFI_HTTP_MESSAGE msg;
    memset(&msg, 0, sizeof msg);
    msg.Data.Request = &req;
    msg.HeaderCount = nh;
    msg.Headers = hdrs;
    EFI_HTTP_TOKEN tok;
    memset(&tok, 0, sizeof tok);
    tok.Event = ev;
    tok.Message = &msg;
    done = FALSE;
    st = http->Request(http, &tok);
    if (!EFI_ERROR(st))
        st = wait_token(http, &tok, &done, until);
    if (EFI_ERROR(st)) {
        cb_log("error: GET %s: cannot send the request (registry unreachable?) (%s)", url,
               net_status(st));
        goto out;
    }

    /* Response headers */
    EFI_HTTP_RESPONSE_DATA rd;
    memset(&rd, 0, sizeof rd);
    memset(&msg, 0, sizeof msg);
    msg.Data.Response = &rd;
    tok.Status = EFI_SUCCESS;
    done = FALSE;
    st = http->Response(http, &tok);
    if (!EFI_ERROR(st))
        st = wait_token(http, &tok, &done, until);
    if (EFI_ERROR(st)) {
        cb_log("error: GET %s: no response from the server (%s)", url, net_status(st));
        goto out;
    }
    resp->status = cb_http_status_number(rd.StatusCode);
    for (UINTN i = 0; i < msg.HeaderCount; i++) {
        const char *name = msg.Headers[i].FieldName, *value = msg.Headers[i].FieldValue;
        if (!name || !value)
            continue;
        if (ieq(name, "Content-Length"))
            resp->content_length = parse_u64(value);
        else if (ieq(name, "Content-Type"))
            cb_strlcpy(resp->content_type, value, sizeof resp->content_type);
        else if (ieq(name, "Location"))
            cb_strlcpy(resp->location, value, sizeof resp->location);
    }
    if (msg.Headers) {
        for (UINTN i = 0; i < msg.HeaderCount; i++) {
            if (msg.Headers[i].FieldName)
                cb_bs->FreePool(msg.Headers[i].FieldName);
            if (msg.Headers[i].FieldValue)
                cb_bs->FreePool(msg.Headers[i].FieldValue);
        }
        cb_bs->FreePool(msg.Headers);
    }
    int ok = resp->status >= 200 && resp->status < 300;
    if (ok && resp->content_length != CB_HTTP_NO_LENGTH && resp->content_length > cap) {
        st = EFI_BUFFER_TOO_SMALL;
        goto out;
    }
    UINT64 want = resp->content_length;
    if (want == CB_HTTP_NO_LENGTH || want > cap)
        want = cap; /* an error body: keep what fits */

    /* Body */
    while (*got < want) {
        UINT64 room = want - *got;
        if (room > (1u << 20))
            room = 1u << 20;
        memset(&msg, 0, sizeof msg);
        msg.Data.Response = NULL;
        msg.Body = (UINT8 *)buf + *got;
        msg.BodyLength = (UINTN)room;
        tok.Status = EFI_SUCCESS;
        done = FALSE;
        st = http->Response(http, &tok);
        if (!EFI_ERROR(st))
            st = wait_token(http, &tok, &done, until);
        if (EFI_ERROR(st) || msg.BodyLength == 0) {
            if (resp->content_length == CB_HTTP_NO_LENGTH || !ok) {
                st = EFI_SUCCESS; /* the server closed: that was the whole body */
                break;
            }
            cb_fail(EFI_ERROR(st) ? st : EFI_END_OF_FILE,
                    "GET %s: the transfer stopped after %lu of %lu bytes", url, *got,
                    resp->content_length);
            if (!EFI_ERROR(st))
                st = EFI_END_OF_FILE;
            goto out;
        }
        UINT8 *at = (UINT8 *)buf + *got;
        *got += msg.BodyLength;
        if (ok && chunk && chunk(ctx, at, msg.BodyLength, *got)) {
            st = EFI_ABORTED;
            goto out;
        }
        /* a fresh deadline per chunk: a slow but steady transfer is fine */
        if (until) {
            cb_bs->SetTimer(until, TimerRelative, (UINT64)timeout_ms * 10000);
        }
    }
    st = EFI_SUCCESS;
out:
    if (ev)
        cb_bs->CloseEvent(ev);
    if (until)
        cb_bs->CloseEvent(until);
    if (http)
        http->Configure(http, NULL);
    if (child)
        sb->DestroyChild(sb, child);
    return st;
}
