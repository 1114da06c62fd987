/* The arrays of numbers at chosen places of a JSON document, read straight into doubles, and
 * the document with each of them replaced by a placeholder `0` (its "skeleton").
 *
 * The server hands the skeleton, a few hundred bytes, to orjson, which validates it and builds
 * its Python values, and puts the arrays back where the placeholders were
 * (service/json_native.py). Replacing a strictly valid array by a number leaves a document
 * valid exactly where it was, so everything outside the arrays keeps orjson's rules; what is
 * here must only find the arrays' places as JSON does and read each array as strictly and as
 * exactly as orjson and numpy would:
 *  - an array of numbers, or of rows of numbers of one length, with JSON's number grammar
 *    and whitespace; anything else at a chosen place (an empty array, a string, a boolean
 *    among the numbers, rows of two lengths) declines the whole document;
 *  - each number rounded correctly to the nearest double, as orjson does (ties to even), and
 *    an integer written without fraction or exponent read as the integer (so "-0" is 0.0);
 *  - magnitudes of 2**53 or more decline: numpy reads an array of such integers as int64 and
 *    rounds each to float32 once, where doubles would be rounded twice.
 * Declining is never wrong: the caller then parses the document the slow way, which also words
 * any refusal.
 *
 * Numbers are read as up to 19 significant digits w and a power of ten q, and w * 10**q is
 * rounded by one 64 x 64-bit product of w with 5**q's leading 64 bits (truncated), wherever
 * that product's error, below one unit of its 65th bit, cannot move the rounding; the rest
 * (about 2 numbers in 512, ties, more than 19 digits, subnormals) by one exact division or
 * multiplication where w and 10**q are both exact doubles, else by strtod_l in the C locale. A long flat array may
 * be read in two halves on two threads (read_flat).
 *
 * It also counts a body's commas and opening brackets as it arrives (json_value_marks), for
 * the server's bound on a body's JSON values.
 *
 * The text is only read within [text, text + length): every step checks the end.
 */
#define _GNU_SOURCE
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DECLINE (-1)
#define MAX_PATHS 32
#define MAX_ARRAYS 64 /* arrays at the paths: more decline */
#define ARRAY_FIELDS 5
/* A flat array of this many bytes or more is read by two threads where the caller allows:
 * starting the second thread costs tens of microseconds, and with a 64 KB threshold two
 * threads read the 130 KB body of `python -m benchmarks.json_decode` slower than one, its
 * 235 KB and 517 KB ones faster. */
#define SPLIT_BYTES (192 * 1024)
#define MAX_STEPS 16
#define MAX_DEPTH 1100 /* deeper than orjson parses (1024), so such documents decline */
#define MAX_FALLBACK_TOKEN 1024
#define SMALLEST_POWER (-342)
#define LARGEST_POWER 308
#define POWERS (LARGEST_POWER - SMALLEST_POWER + 1)
#define EXACT_INTEGERS 9007199254740992.0 /* 2**53 */

/* 5**q for q in [SMALLEST_POWER, LARGEST_POWER] as m * 2**e, m in [2**63, 2**64) the
 * truncated leading bits; set once by json_numbers_init. */
static uint64_t power_mantissa[POWERS];
static int32_t power_exponent[POWERS];
static locale_t c_locale;

int json_numbers_init(const uint64_t *mantissas, const int32_t *exponents, int64_t count) {
    if (count != POWERS) return DECLINE;
    memcpy(power_mantissa, mantissas, sizeof power_mantissa);
    memcpy(power_exponent, exponents, sizeof power_exponent);
    if (!c_locale) c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    return c_locale ? 0 : DECLINE;
}

static inline int is_digit(unsigned char c) { return (unsigned char)(c - '0') < 10; }
static inline int is_space(unsigned char c) {
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static const unsigned char *skip_space(const unsigned char *p, const unsigned char *end) {
    while (p < end && is_space(*p)) p++;
    return p;
}

static const uint64_t POWERS_OF_TEN_INT[] = {1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull,
                                              1000000ull, 10000000ull, 100000000ull};

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define EIGHT_AT_ONCE 1
/* Eight digit values, one per byte, first in the lowest and most significant, as one number:
 * neighbouring digits are joined into pairs, then pairs into the whole by two
 * multiplications that each place two pairs. */
static inline uint64_t eight_digits_value(uint64_t digits) {
    digits = digits * 10 + (digits >> 8);                    /* byte 2k: the k-th pair */
    uint64_t even = digits & 0x000000FF000000FFull;          /* pairs 0 and 2 */
    uint64_t odd = (digits >> 16) & 0x000000FF000000FFull;   /* pairs 1 and 3 */
    return (even * (100 + (1000000ull << 32)) + odd * (1 + (10000ull << 32))) >> 32;
}
#else
#define EIGHT_AT_ONCE 0
#endif

/* The digits from *p on appended to *w (which wraps past 19 digits: the caller counts them and
 * reads such numbers slowly); moves *p past them and returns how many there were. */
static inline int read_digits(const unsigned char **p, const unsigned char *end, uint64_t *w) {
    const unsigned char *start = *p, *at = start;
    uint64_t value = *w;
#if EIGHT_AT_ONCE
    /* Eight bytes at a time, with no branch on how many of them are digits: numbers of about
     * one length take the same branches. */
    while (end - at >= 8) {
        uint64_t bytes;
        memcpy(&bytes, at, 8);
        uint64_t less = bytes - 0x3030303030303030ull;
        /* A byte below '0' borrows (high nibble F), one above '9' passes 0x0F once 6 is added;
         * a borrow only reaches bytes after the first that is no digit. */
        uint64_t not_digit = (less | (less + 0x0606060606060606ull)) & 0xF0F0F0F0F0F0F0F0ull;
        int count = not_digit ? __builtin_ctzll(not_digit) >> 3 : 8;
        /* The first `count` digits moved to the top bytes, zeros before them; a shift by 64
         * is undefined, so no digits keeps the value as it is. */
        uint64_t digits = count ? less << (8 * (8 - count)) : 0;
        value = value * POWERS_OF_TEN_INT[count] + eight_digits_value(digits);
        at += count;
        if (count < 8) {
            *p = at;
            *w = value;
            return (int)(at - start);
        }
    }
#endif
    while (at < end && is_digit(*at)) value = value * 10 + (uint64_t)(*at++ - '0');
    *p = at;
    *w = value;
    return (int)(at - start);
}

/* The correctly rounded double of the token [start, end) by strtod_l; DECLINE where it is too
 * long to copy. */
static int read_slowly(const unsigned char *start, const unsigned char *end, double *out) {
    char token[MAX_FALLBACK_TOKEN];
    size_t size = (size_t)(end - start);
    if (size >= sizeof token) return DECLINE;
    memcpy(token, start, size);
    token[size] = 0;
    *out = strtod_l(token, NULL, c_locale);
    return 0;
}

/* w * 10**q rounded to the nearest double by one product with 5**q's leading bits, or
 * DECLINE where that product cannot decide (the caller then reads the token slowly). */
static int round_product(uint64_t w, int64_t q, double *out) {
    if (q < SMALLEST_POWER || q > LARGEST_POWER) return DECLINE;
    int shift_in = __builtin_clzll(w);
    uint64_t normal = w << shift_in;
    unsigned __int128 product =
        (unsigned __int128)normal * power_mantissa[q - SMALLEST_POWER];
    uint64_t high = (uint64_t)(product >> 64);
    /* The exact product is above this one by less than one unit of `high`'s lowest bit. */
    int upper = (int)(high >> 63);
    int shift = 9 + upper;                 /* keeps 54 bits: a double's 53 and a rounding bit */
    uint64_t below = high & ((1ull << shift) - 1);
    uint64_t mantissa = high >> shift;
    if (below == (1ull << shift) - 1) return DECLINE;    /* the error could carry upward */
    if (below == 0 && (mantissa & 1)) return DECLINE;   /* at or just past a tie */
    /* w * 10**q = normal * 2**-shift_in * 5**q * 2**q, 5**q = table mantissa * 2**e, and the
     * product is about high * 2**64: value = mantissa * 2**(shift + 64 + e + q - shift_in). */
    int64_t exponent = shift + 64 + (int64_t)power_exponent[q - SMALLEST_POWER] + q - shift_in;
    mantissa = (mantissa + (mantissa & 1)) >> 1;
    exponent += 1;
    if (mantissa == (1ull << 53)) {
        mantissa >>= 1;
        exponent += 1;
    }
    int64_t biased = exponent + 52 + 1023;
    if (biased <= 0 || biased >= 2047) return DECLINE;   /* subnormal or past a double's range */
    uint64_t bits = ((uint64_t)biased << 52) | (mantissa & ((1ull << 52) - 1));
    memcpy(out, &bits, sizeof bits);
    return 0;
}

static const double POWERS_OF_TEN[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                                       1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
                                       1e20, 1e21, 1e22};

/* One JSON number from p: its end, or NULL where the text there is not one. *out is its
 * correctly rounded double. */
static const unsigned char *read_number(const unsigned char *p, const unsigned char *end,
                                        double *out) {
    const unsigned char *start = p;
    int negative = p < end && *p == '-', integer = 1;
    p += negative;
    if (p >= end || !is_digit(*p)) return NULL;
    int leading_zero = *p == '0';
    uint64_t w = 0;
    int digits = read_digits(&p, end, &w);   /* a leading "0" counts: it changes nothing */
    if (leading_zero && digits > 1) return NULL;
    int64_t q = 0;
    if (p < end && *p == '.') {
        integer = 0;
        p++;
        int fraction = read_digits(&p, end, &w);
        if (!fraction) return NULL;
        digits += fraction;
        q = -fraction;
    }
    if (p < end && (*p | 0x20) == 'e') {
        integer = 0;
        p++;
        int exponent_negative = 0;
        if (p < end && (*p == '+' || *p == '-')) {
            exponent_negative = *p == '-';
            p++;
        }
        if (p >= end || !is_digit(*p)) return NULL;
        int64_t exponent = 0;
        for (; p < end && is_digit(*p); p++) {
            if (exponent < 100000) exponent = exponent * 10 + (*p - '0');
        }
        q += exponent_negative ? -exponent : exponent;
    }
    double value;
    if (digits > 19) {      /* w wrapped (zeros after "0." count too: such numbers are rare) */
        if (read_slowly(start, p, &value) != 0) return NULL;
        *out = value;
        return p;
    }
    if (w == 0) {
        value = 0.0;
    } else if (round_product(w, q, &value) != 0) {
        if (w <= (1ull << 53) && q >= -22 && q <= 22) {
            /* Both factors exact: one correctly rounded operation. */
            value = q < 0 ? (double)w / POWERS_OF_TEN[-q] : (double)w * POWERS_OF_TEN[q];
        } else {
            if (read_slowly(start, p, &value) != 0) return NULL;
            *out = value;
            return p;
        }
    }
    /* orjson reads "-0" as the integer 0, "-0.0" as the float -0.0 */
    *out = negative && !(integer && w == 0) ? -value : value;
    return p;
}

typedef struct {
    const unsigned char *end;
    double *numbers;
    int64_t count, capacity;
} Reader;

/* Numbers separated by commas from p up to a closing bracket (the position after it), or,
 * where `stop` is a comma's position, up to that comma (the position after it); NULL where the
 * text is anything else. At least one number. */
static const unsigned char *read_row(Reader *r, const unsigned char *p,
                                     const unsigned char *stop) {
    /* The count in a local: the reader may share a cache line with another thread's. */
    int64_t count = r->count;
    const unsigned char *out = NULL;
    for (;;) {
        p = skip_space(p, r->end);
        if (count == r->capacity) break;
        double value;
        p = read_number(p, r->end, &value);
        if (!p || !(fabs(value) < EXACT_INTEGERS)) break;
        r->numbers[count++] = value;
        p = skip_space(p, r->end);
        if (p == stop || (p < r->end && *p == ']' && !stop)) {
            out = p + 1;
            break;
        }
        if (p >= r->end || *p != ',') break;
        p++;
    }
    r->count = count;
    return out;
}

typedef struct {
    Reader reader;
    const unsigned char *from, *after;
} Half;

static void *read_second_half(void *arg) {
    Half *half = arg;
    half->after = read_row(&half->reader, half->from, NULL);
    return NULL;
}

/* The constants a caller lays out the scratch by and reads it with: SPLIT_BYTES, MAX_ARRAYS,
 * ARRAY_FIELDS. */
void json_layout(int64_t out[3]) {
    out[0] = SPLIT_BYTES;
    out[1] = MAX_ARRAYS;
    out[2] = ARRAY_FIELDS;
}

/* A flat array's numbers from just after its opening bracket: the position after its closing
 * one, or NULL. From SPLIT_BYTES of numbers on, a second thread reads the half after the first
 * comma past the middle while this one reads the first, into room left after the first
 * half's most numbers (one per two bytes); the second half's numbers then move down. */
static const unsigned char *read_flat(Reader *r, const unsigned char *p, int threads) {
    const unsigned char *close = threads > 1 && r->end - p >= SPLIT_BYTES
                                     ? memchr(p, ']', (size_t)(r->end - p)) : NULL;
    const unsigned char *middle = close ? p + (close - p) / 2 : NULL;
    const unsigned char *comma = close && close - p >= SPLIT_BYTES
                                     ? memchr(middle, ',', (size_t)(close - middle)) : NULL;
    int64_t room = comma ? (comma - p) / 2 + 1 : 0;
    if (!comma || r->count + room >= r->capacity) return read_row(r, p, NULL);
    Reader first = {r->end, r->numbers, r->count, r->count + room};
    Half second = {{r->end, r->numbers + first.capacity, 0, r->capacity - first.capacity},
                   comma + 1, NULL};
    pthread_t thread;
    if (pthread_create(&thread, NULL, read_second_half, &second) != 0)
        return read_row(r, p, NULL);
    const unsigned char *split = read_row(&first, p, comma);
    pthread_join(thread, NULL);
    if (!split || !second.after) return NULL;
    memmove(r->numbers + first.count, second.reader.numbers,
            sizeof(double) * (size_t)second.reader.count);
    r->count = first.count + second.reader.count;
    return second.after;
}

/* An array of numbers, or of rows of numbers of one length, from its opening bracket: the
 * position after it, or NULL. *rows is 0 for a flat array. */
static const unsigned char *read_array(Reader *r, const unsigned char *p, int64_t *rows,
                                       int64_t *columns, int threads) {
    int64_t first = r->count;
    p = skip_space(p + 1, r->end);
    if (p >= r->end) return NULL;
    if (*p != '[') {
        *rows = 0;
        p = read_flat(r, p, threads);
        *columns = r->count - first;
        return p;
    }
    *rows = 0;
    for (;;) {
        int64_t before = r->count;
        p = read_row(r, p + 1, NULL);
        if (!p) return NULL;
        int64_t length = r->count - before;
        if (*rows == 0) *columns = length;
        else if (length != *columns) return NULL;
        ++*rows;
        p = skip_space(p, r->end);
        if (p >= r->end) return NULL;
        if (*p == ']') return p + 1;
        if (*p != ',') return NULL;
        p = skip_space(p + 1, r->end);
        if (p >= r->end || *p != '[') return NULL;
    }
}

/* The end of a string from its opening quote (the position after the closing one), or NULL. */
static const unsigned char *string_end(const unsigned char *p, const unsigned char *end) {
    for (p++; p < end; p++) {
        if (*p == '\\') p++;
        else if (*p == '"') return p + 1;
    }
    return NULL;
}

typedef struct {
    int count;
    int steps[MAX_PATHS];
    const unsigned char *step[MAX_PATHS][MAX_STEPS];  /* NULL: any element of an array */
    int step_length[MAX_PATHS][MAX_STEPS];
} Paths;

/* Paths as `count` then, per path, its step count and, per step, a length byte and the key's
 * bytes (length 255: the wildcard "*"). */
static int read_paths(const unsigned char *spec, int64_t length, Paths *paths) {
    const unsigned char *p = spec, *end = spec + length;
    if (p >= end) return DECLINE;
    paths->count = *p++;
    if (paths->count < 1 || paths->count > MAX_PATHS) return DECLINE;
    for (int i = 0; i < paths->count; i++) {
        if (p >= end) return DECLINE;
        paths->steps[i] = *p++;
        if (paths->steps[i] < 1 || paths->steps[i] > MAX_STEPS) return DECLINE;
        for (int s = 0; s < paths->steps[i]; s++) {
            if (p >= end) return DECLINE;
            int size = *p++;
            if (size == 255) {
                paths->step[i][s] = NULL;
                paths->step_length[i][s] = 0;
                continue;
            }
            if (end - p < size) return DECLINE;
            paths->step[i][s] = p;
            paths->step_length[i][s] = size;
            p += size;
        }
    }
    return p == end ? 0 : DECLINE;
}

/* The paths of `mask` whose step `depth` the child named by key [key, key + size) (an array's
 * element where key is NULL) matches. A wildcard matches an array's elements and the key "*",
 * as the caller's Python walk does. */
static uint32_t child_mask(const Paths *paths, uint32_t mask, int depth,
                           const unsigned char *key, int64_t size) {
    uint32_t out = 0;
    for (int i = 0; i < paths->count; i++) {
        if (!(mask >> i & 1) || paths->steps[i] <= depth) continue;
        const unsigned char *step = paths->step[i][depth];
        int length = paths->step_length[i][depth];
        int match;
        if (!key) match = step == NULL;
        else if (!step) match = size == 1 && key[0] == '*';
        else match = size == length && memcmp(step, key, (size_t)length) == 0;
        if (match) out |= 1u << i;
    }
    return out;
}

static int first_ending(const Paths *paths, uint32_t mask, int depth) {
    for (int i = 0; i < paths->count; i++)
        if ((mask >> i & 1) && paths->steps[i] == depth) return i;
    return -1;
}

/* The scratch a call writes, in this order: the header (int64: the skeleton's length, then
 * ARRAY_FIELDS per array), the numbers (doubles, at most one per two bytes of text), and the
 * skeleton (at most the text's length, as an array of two or more bytes becomes `0`). */
static int64_t scratch_bytes_needed(int64_t length) {
    return 8 * (1 + ARRAY_FIELDS * MAX_ARRAYS) + 8 * (length / 2 + 1) + length;
}

/* Reads the arrays of numbers at `spec`'s paths of the JSON text into the scratch (of
 * scratch_bytes_needed or more, else DECLINE; 8-byte aligned): per array, in the document's order, its
 * first number's index, count, rows (0: flat), columns and path's index; the numbers; and the
 * text with each array replaced by `0`. Returns the count of arrays, or DECLINE where a value
 * at one of the paths is no such array, a key on the way holds an escape, the document nests
 * deeper than MAX_DEPTH, or it holds more than MAX_ARRAYS arrays at the paths. */
int64_t json_numeric_arrays(const unsigned char *text, int64_t length,
                            const unsigned char *spec, int64_t spec_length, void *scratch,
                            int64_t scratch_bytes, int threads) {
    uint8_t is_object[MAX_DEPTH];
    uint32_t masks[MAX_DEPTH];      /* per open container: the paths its children may be on */
    Paths paths;
    if (!c_locale || read_paths(spec, spec_length, &paths) != 0 || length < 0 ||
        scratch_bytes < scratch_bytes_needed(length) || (uintptr_t)scratch % 8)
        return DECLINE;
    int64_t *header = scratch;
    double *numbers = (double *)(header + 1 + ARRAY_FIELDS * MAX_ARRAYS);
    unsigned char *skeleton = (unsigned char *)(numbers + length / 2 + 1);
    Reader reader = {text + length, numbers, 0, length / 2 + 1};
    const unsigned char *p = text, *end = text + length, *copied = text;
    int depth = 0;           /* containers open */
    int expect_key = 0;      /* the next string in the object open is a key */
    uint32_t value_mask = (paths.count == 32) ? 0xFFFFFFFFu : ((1u << paths.count) - 1);
    int64_t found = 0, written = 0;
    while ((p = skip_space(p, end)) < end) {
        unsigned char c = *p;
        int path = depth > 0 && value_mask ? first_ending(&paths, value_mask, depth) : -1;
        if (c == '"') {
            const unsigned char *after = string_end(p, end);
            if (!after) return DECLINE;
            if (depth > 0 && is_object[depth - 1] && expect_key) {
                uint32_t mask = masks[depth - 1];
                if (mask && memchr(p, '\\', (size_t)(after - p))) return DECLINE;
                value_mask = mask ? child_mask(&paths, mask, depth - 1, p + 1, after - p - 2)
                                  : 0;
                expect_key = 0;
            } else if (path >= 0) {
                return DECLINE;
            } else {
                value_mask = 0;
            }
            p = after;
        } else if (c == '[' && path >= 0) {
            if (found == MAX_ARRAYS) return DECLINE;
            int64_t first = reader.count, rows, columns;
            const unsigned char *after = read_array(&reader, p, &rows, &columns, threads);
            if (!after) return DECLINE;
            int64_t *fields = header + 1 + ARRAY_FIELDS * found++;
            fields[0] = first;
            fields[1] = reader.count - first;
            fields[2] = rows;
            fields[3] = columns;
            fields[4] = path;
            memcpy(skeleton + written, copied, (size_t)(p - copied));
            written += p - copied;
            skeleton[written++] = '0';
            copied = p = after;
            value_mask = 0;
        } else if (c == '{' || c == '[') {
            if (path >= 0 || depth == MAX_DEPTH) return DECLINE;
            is_object[depth] = c == '{';
            masks[depth] = value_mask;
            depth++;
            expect_key = c == '{';
            value_mask = c == '[' && masks[depth - 1]
                             ? child_mask(&paths, masks[depth - 1], depth - 1, NULL, 0) : 0;
            p++;
        } else if (c == '}' || c == ']') {
            if (depth == 0) return DECLINE;
            depth--;
            value_mask = 0;
            expect_key = 0;
            p++;
        } else if (c == ',') {
            if (depth == 0) return DECLINE;
            if (is_object[depth - 1]) {
                expect_key = 1;
                value_mask = 0;
            } else {
                value_mask = masks[depth - 1]
                                 ? child_mask(&paths, masks[depth - 1], depth - 1, NULL, 0) : 0;
            }
            p++;
        } else if (c == ':') {
            p++;
        } else {
            /* A number or a literal: skipped to the next delimiter (orjson checks it). */
            if (path >= 0) return DECLINE;
            while (p < end && !is_space(*p) && *p != ',' && *p != ']' && *p != '}' &&
                   *p != ':' && *p != '"' && *p != '[' && *p != '{')
                p++;
            value_mask = 0;
        }
    }
    memcpy(skeleton + written, copied, (size_t)(end - copied));
    written += end - copied;
    header[0] = written;
    return found;
}

/* Commas and opening brackets ("[" and "{") in [text, text + length): the bound on a JSON
 * text's values that service/json_budget.py keeps as a body arrives. One pass, which the
 * compiler vectorizes (16 bytes at a time even in x86-64's baseline set). */
int64_t json_value_marks(const unsigned char *text, int64_t length) {
    int64_t total = 0;
    for (int64_t start = 0; start < length; start += 65536) {
        int64_t stop = length - start < 65536 ? length : start + 65536;
        /* 32-bit counts, which vectorize better, summed every 64 KiB before they could
         * overflow. */
        uint32_t count = 0;
        for (int64_t i = start; i < stop; i++) {
            unsigned char c = text[i];
            count += (c == ',') + (c == '[') + (c == '{');
        }
        total += count;
    }
    return total;
}
