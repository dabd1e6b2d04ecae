# The store of accepted deposits and withdrawals, included by _ledger.pyx (one compiled
# module: the ledger's rules there, the data structure here). It uses the C types and
# allocators _ledger.pyx cimports before the include.

# ---------------------------------------------------------------------------------------
# The store of accepted deposits and withdrawals
# ---------------------------------------------------------------------------------------
#
# A stored transaction is a tx id (u32) and a record (u64) packing its
# client (bits 0-15), its state (bits 16-17) and its amount (bits 18-63):
# 12 bytes. An amount that does not fit 46 bits (or is 0, which no valid row
# has) is stored as AMOUNT_ESCAPE, and the amount itself in the `big` table:
# a record is never 0.
#
# * Rising ids (tx above the largest stored one: the usual file) are
#   appended to two arrays sorted by tx, `tx` and `rec`, grown by realloc
#   (glibc moves large blocks with mremap: capacity not yet written is not
#   resident). A lookup bisects `fence` (every FENCE-th id: 1/16 byte a
#   transaction, small enough to stay in cache), then one block of FENCE ids.
# * Other ids (`sparse` files) go to `side`, an open-addressing table
#   (linear probing, Fibonacci hashing) of tx -> record at most half full,
#   holding between 1/8 and 1/4 of the sorted arrays. When it is full its
#   entries are sorted (radix sort) and merged into the sorted arrays from
#   the back, in place; then a fresh, empty side table is made.
#
# A lookup (`store_find`) returns a pointer to the record (in `rec` or in
# `side`), valid until the next insert.

cdef enum:
    # Ids a fence entry covers: a lookup bisects n / FENCE fence entries, then
    # FENCE ids. 32 and 128 measured within 1% of 64 (profiling/README.md).
    FENCE = 64
    # The side table merges at SIDE_MIN entries, or at 1/SIDE_SHARE to 1/SIDE_SHARE * 2
    # of the sorted arrays if more. Every merge rewrites the sorted arrays, so a
    # larger share merges less often but holds more: on 10M `sparse` rows 8
    # takes 0.79-0.83x the apply time of 32, at 17.9 bytes a stored
    # transaction against 14.3; 4 takes 0.82x at 20.3 (profiling/README.md).
    SIDE_MIN = 4096
    SIDE_SHARE = 8
    STATE_SHIFT = 16           # a record: client (bits 0-15), state (16-17), amount (18-63)
    AMOUNT_SHIFT = 18

cdef uint64_t AMOUNT_ESCAPE = (<uint64_t>1 << 46) - 1
cdef uint64_t BIG_MARK = <uint64_t>1 << 63   # `big` values: amount | BIG_MARK, never 0


ctypedef struct Table:
    # open addressing: keys[i] is a tx id where values[i] != 0 (0: an empty slot)
    uint32_t *keys
    uint64_t *values
    size_t mask                # slots - 1; slots is a power of two
    int shift                  # 64 - log2(slots): a hash's top bits pick the home slot
    size_t count


ctypedef struct Store:
    uint32_t *tx               # sorted ids, n of them, room for cap
    uint64_t *rec              # their records
    size_t n
    size_t cap
    uint32_t *fence            # tx[0], tx[FENCE], tx[2 * FENCE], ...
    size_t fence_cap
    Table side                 # ids below tx[n - 1] when they were stored
    size_t side_limit          # merge when side holds this many
    Table big                  # tx -> amount | BIG_MARK, for records holding AMOUNT_ESCAPE


cdef inline size_t table_home(const Table *t, uint32_t tx) noexcept nogil:
    return <size_t>((<uint64_t>tx * <uint64_t>0x9E3779B97F4A7C15ULL) >> t.shift)


cdef int table_init(Table *t, size_t slots) except -1:
    """An empty table of ``slots`` (a power of two) slots."""
    cdef int bits = 0
    while (<size_t>1 << bits) < slots:
        bits += 1
    t.keys = <uint32_t *>malloc(slots * sizeof(uint32_t))
    t.values = <uint64_t *>calloc(slots, sizeof(uint64_t))
    if t.keys == NULL or t.values == NULL:
        free(t.keys)
        free(t.values)
        t.keys = NULL
        t.values = NULL
        raise MemoryError()
    t.mask = slots - 1
    t.shift = 64 - bits
    t.count = 0
    return 0


cdef void table_free(Table *t) noexcept nogil:
    free(t.keys)
    free(t.values)
    t.keys = NULL
    t.values = NULL
    t.count = 0


cdef inline uint64_t *table_find(const Table *t, uint32_t tx) noexcept nogil:
    """The value slot of ``tx``, or NULL."""
    cdef size_t i = table_home(t, tx)
    while t.values[i]:
        if t.keys[i] == tx:
            return &t.values[i]
        i = (i + 1) & t.mask
    return NULL


cdef inline uint64_t *table_put(Table *t, uint32_t tx, uint64_t value) noexcept nogil:
    """Insert ``tx`` -> ``value`` (``value`` != 0; the table has room); return its value slot."""
    cdef size_t i = table_home(t, tx)
    while t.values[i]:
        i = (i + 1) & t.mask
    t.keys[i] = tx
    t.values[i] = value
    t.count += 1
    return &t.values[i]


cdef int big_put(Store *s, uint32_t tx, int64_t amount) except -1:
    """Keep ``amount`` of ``tx`` in the big table (doubling it when half full)."""
    cdef Table old
    cdef size_t i
    if s.big.values == NULL:
        table_init(&s.big, 64)
    elif 2 * (s.big.count + 1) > s.big.mask + 1:
        old = s.big
        table_init(&s.big, 2 * (old.mask + 1))
        for i in range(old.mask + 1):
            if old.values[i]:
                table_put(&s.big, old.keys[i], old.values[i])
        table_free(&old)
    table_put(&s.big, tx, <uint64_t>amount | BIG_MARK)
    return 0


cdef inline int64_t rec_amount(const Store *s, uint32_t tx, uint64_t rec) noexcept nogil:
    """The stored amount of the record ``rec`` of ``tx``."""
    cdef uint64_t field = rec >> AMOUNT_SHIFT
    cdef uint64_t *big
    if field != AMOUNT_ESCAPE:
        return <int64_t>field
    big = table_find(&s.big, tx)
    return <int64_t>(big[0] & ~BIG_MARK) if big != NULL else 0


cdef int grow(void **block, size_t *cap, size_t need, size_t item) except -1:
    """Grow ``*block`` (``*cap`` items of ``item`` bytes) to at least ``need`` items, doubling."""
    cdef size_t new_cap = cap[0] * 2 if cap[0] else 1024
    cdef void *p
    while new_cap < need:
        new_cap *= 2
    p = realloc(block[0], new_cap * item)
    if p == NULL:
        raise MemoryError()
    block[0] = p
    cap[0] = new_cap
    return 0


cdef int store_grow(Store *s, size_t need) except -1:
    """Room for ``need`` ids in the sorted arrays."""
    cdef size_t cap = s.cap
    if need <= cap:
        return 0
    grow(<void **>&s.tx, &cap, need, sizeof(uint32_t))
    cap = s.cap
    grow(<void **>&s.rec, &cap, need, sizeof(uint64_t))
    s.cap = cap
    return 0


cdef int store_fence(Store *s, size_t start) except -1:
    """Set the fence entries of ids ``start`` (a multiple of FENCE) to ``n - 1``."""
    cdef size_t need = (s.n + FENCE - 1) // FENCE
    cdef size_t k
    if need > s.fence_cap:
        grow(<void **>&s.fence, &s.fence_cap, need, sizeof(uint32_t))
    for k in range(start // FENCE, need):
        s.fence[k] = s.tx[k * FENCE]
    return 0


cdef int store_side_reset(Store *s) except -1:
    """A fresh, empty side table for the sorted arrays' present size."""
    cdef size_t target = s.n // SIDE_SHARE
    cdef size_t slots = 2 * SIDE_MIN
    if target < SIDE_MIN:
        target = SIDE_MIN
    while slots < 2 * target:
        slots *= 2
    table_free(&s.side)
    table_init(&s.side, slots)
    s.side_limit = slots // 2
    return 0


cdef inline uint64_t *store_find(const Store *s, uint32_t tx) noexcept nogil:
    """The record of stored ``tx``, or NULL: the side table, then fence and block."""
    cdef size_t n = s.n, lo, hi, mid
    cdef uint64_t *found
    if s.side.count:
        found = table_find(&s.side, tx)
        if found != NULL:
            return found
    if n == 0 or tx > s.tx[n - 1] or tx < s.tx[0]:
        return NULL
    lo = 0  # the last fence entry <= tx: fence[lo] <= tx < fence[hi]
    hi = (n + FENCE - 1) // FENCE
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if s.fence[mid] <= tx:
            lo = mid
        else:
            hi = mid
    lo *= FENCE  # then the first id >= tx in its block
    hi = lo + FENCE if lo + FENCE < n else n
    while lo < hi:
        mid = (lo + hi) >> 1
        if s.tx[mid] < tx:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and s.tx[lo] == tx:
        return &s.rec[lo]
    return NULL


cdef int store_put(Store *s, uint32_t tx, int client, int state, int64_t amount) except -1:
    """Store an accepted deposit or withdrawal (``tx`` not stored yet)."""
    cdef uint64_t field = <uint64_t>amount
    cdef uint64_t rec
    cdef size_t n = s.n
    if field == 0 or field >= AMOUNT_ESCAPE:
        field = AMOUNT_ESCAPE
        big_put(s, tx, amount)
    rec = field << AMOUNT_SHIFT | <uint64_t>state << STATE_SHIFT | <uint64_t>client
    if n == 0 or tx > s.tx[n - 1]:
        if n == s.cap:
            store_grow(s, n + 1)
        s.tx[n] = tx
        s.rec[n] = rec
        s.n = n + 1
        if n % FENCE == 0:
            store_fence(s, n)
        return 0
    if s.side.values == NULL:
        store_side_reset(s)
    table_put(&s.side, tx, rec)
    if s.side.count >= s.side_limit:
        store_merge(s)
    return 0


cdef void radix_sort(uint32_t *tx, uint64_t *rec, uint32_t *tx_tmp, uint64_t *rec_tmp, size_t m) noexcept nogil:
    """Sort ``m`` (tx, rec) pairs by tx: four stable passes of 8 bits; the result ends in ``tx``/``rec``."""
    cdef size_t counts[256]
    cdef size_t i, total, c
    cdef int shift
    cdef uint32_t *src_tx = tx
    cdef uint64_t *src_rec = rec
    cdef uint32_t *dst_tx = tx_tmp
    cdef uint64_t *dst_rec = rec_tmp
    cdef uint32_t *swap_tx
    cdef uint64_t *swap_rec
    for shift in range(0, 32, 8):
        memset(counts, 0, sizeof(counts))
        for i in range(m):
            counts[(src_tx[i] >> shift) & 255] += 1
        total = 0
        for i in range(256):
            c = counts[i]
            counts[i] = total
            total += c
        for i in range(m):
            c = counts[(src_tx[i] >> shift) & 255]
            counts[(src_tx[i] >> shift) & 255] = c + 1
            dst_tx[c] = src_tx[i]
            dst_rec[c] = src_rec[i]
        swap_tx = src_tx
        src_tx = dst_tx
        dst_tx = swap_tx
        swap_rec = src_rec
        src_rec = dst_rec
        dst_rec = swap_rec
    # four passes: the sorted pairs are back in tx/rec


cdef int store_merge(Store *s) except -1:
    """Move the side table's entries into the sorted arrays; leave an empty side table."""
    cdef size_t m = s.side.count, i, j, k, first
    store_grow(s, s.n + m)
    cdef uint32_t *side_tx = <uint32_t *>malloc(2 * m * sizeof(uint32_t) + 1)
    cdef uint64_t *side_rec = <uint64_t *>malloc(2 * m * sizeof(uint64_t) + 1)
    if side_tx == NULL or side_rec == NULL:
        free(side_tx)
        free(side_rec)
        raise MemoryError()
    j = 0
    for i in range(s.side.mask + 1):
        if s.side.values[i]:
            side_tx[j] = s.side.keys[i]
            side_rec[j] = s.side.values[i]
            j += 1
    table_free(&s.side)
    radix_sort(side_tx, side_rec, side_tx + m, side_rec + m, m)
    # from the back: the largest of the two remaining goes to the last free place
    i = s.n
    j = m
    k = s.n + m
    while j:
        k -= 1
        if i and s.tx[i - 1] > side_tx[j - 1]:
            i -= 1
            s.tx[k] = s.tx[i]
            s.rec[k] = s.rec[i]
        else:
            j -= 1
            s.tx[k] = side_tx[j]
            s.rec[k] = side_rec[j]
    first = k - k % FENCE  # fence entries from the first moved id on
    s.n += m
    free(side_tx)
    free(side_rec)
    store_fence(s, first)
    store_side_reset(s)
    return 0


cdef void store_free(Store *s) noexcept nogil:
    free(s.tx)
    free(s.rec)
    free(s.fence)
    table_free(&s.side)
    table_free(&s.big)
    memset(s, 0, sizeof(Store))
