#include "io/utf8.hpp"

#include <utf8proc.h>

namespace fthost::host {

std::string utf8_lossy(const std::string& bytes) {
    std::string out;
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(bytes.data());
    utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(bytes.size());
    while (left > 0) {
        utf8proc_int32_t cp = 0;
        const utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
        if (n > 0) {
            out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
            p += n, left -= n;
            continue;
        }
        // One U+FFFD per maximal prefix of a valid sequence (at least one byte), as Rust does.
        utf8proc_ssize_t bad = 1;
        const unsigned char lead = p[0];
        const int need = lead >= 0xF0 && lead <= 0xF4 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC2 && lead < 0xE0 ? 2 : 1;
        while (bad < need && bad < left && (p[bad] & 0xC0) == 0x80) {
            // Stop where the prefix can no longer become valid (e.g. E0 80, ED A0, F4 90).
            if (bad == 1 && ((lead == 0xE0 && p[1] < 0xA0) || (lead == 0xED && p[1] > 0x9F) ||
                             (lead == 0xF0 && p[1] < 0x90) || (lead == 0xF4 && p[1] > 0x8F)))
                break;
            ++bad;
        }
        out += "\xEF\xBF\xBD";
        p += bad, left -= bad;
    }
    return out;
}

}  // namespace fthost::host
