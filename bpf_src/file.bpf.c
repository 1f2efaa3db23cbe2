// SPDX-License-Identifier: GPL-2.0-only
/*
 * File telemetry: open, write, rename, unlink and link families.
 *
 * The dispatcher (dispatch.bpf.h) tail-calls these programs for the syscalls the config hooks,
 * native and i386 alike. The open family is seen once, at sys_exit, which reads the arguments
 * from the saved registers; the others twice: sys_enter stashes the arguments per thread,
 * sys_exit builds the event with the result. Paths are resolved in the kernel: a successful open walks the opened
 * file's dentries; other calls carry the directory their name is relative to (cwd or dirfd),
 * walked the same way, and the raw name. The path filter (an LPM trie of directory prefixes,
 * basename suffixes) runs before anything reaches the ring. Writes are reported once per open
 * file: only files that passed the filter when opened for writing are tracked.
 */
#include "common.bpf.h"
#include "dispatch.bpf.h"
#include "file.bpf.h"

#define O_ACCMODE 00000003
#define O_RDONLY 00000000
#define O_CREAT 00000100
#define O_TRUNC 00001000
#define AT_FDCWD -100
#define FMODE_CREATED (1 << 20)

/*
 * Files opened for writing that passed the filter: struct file * -> state. A file's first
 * successful write is reported (and the entry goes), and its first failed one (so a failure
 * cannot hide a later success, and a failing loop cannot flood).
 */
#define RG_REPORTED_ERR 2
struct rg_watched {
	__u64 dentry; /* guards against a recycled struct file */
	__u32 reported; /* RG_REPORTED_* */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct rg_watched);
} rg_watched_files SEC(".maps");

/*
 * Processes that hold such files: lets every other write return after one lookup. A plain
 * hash, not an LRU: a process leaves it when it exits (rg_file_proc_gone), and when it is full
 * a process that cannot be noted is counted (rg_table_full) instead of another evicted unseen.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tgid */
	__type(value, __u32);
} rg_watched_procs SEC(".maps");

/* The inventory's persistence files by inode (filled by userspace as the inventory changes). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rg_inode_key);
	__type(value, __u32); /* i_generation, or 0: not compared */
} rg_persist_inodes SEC(".maps");

/* A file record the filter does not want: counted (health's `filtered`), never sent. */
static __always_inline int filtered(void)
{
	rg_count(&rg_filtered, RG_FAM_FILE);
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rg_filter_key);
	__type(value, struct rg_filter_val);
} rg_filter_trie SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rg_filter_conf);
} rg_filter_conf_map SEC(".maps");

/*
 * The path being judged, assembled whole (dir + "/" + name, or a walked path): its first
 * RG_FILTER_KEY_LEN bytes are the trie key, its end is matched against the suffixes.
 */
struct rg_keybuf {
	__u32 prefixlen;
	__u8 data[3 * RG_PATH_MAX]; /* up to two RG_PATH_MAX strings, plus slack for masking */
	__u32 len;
	__u8 want; /* verdict bits a suffix or pass_all must have */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rg_keybuf);
} rg_key_map SEC(".maps");

#define KEY_MASK (2 * RG_PATH_MAX - 1)
#define PATH_MASK (RG_PATH_MAX - 1)
#define REC_MASK RG_REC_MASK

static __always_inline struct rg_keybuf *rg_keybuf(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&rg_key_map, &zero);
}

static __always_inline void key_append(struct rg_keybuf *k, const void *src, __u32 len)
{
	__u32 at = k->len;

	if (at > RG_PATH_MAX + 1)
		return;
	bpf_probe_read_kernel(&k->data[at & KEY_MASK], len & PATH_MASK, src);
	k->len = at + (len & PATH_MASK);
}

static __always_inline void key_reset(struct rg_keybuf *k)
{
	k->len = 0;
}

/* The trie's verdict bits for the key's first `plen` bytes, for a path `len` bytes long. */
static __always_inline __u8 trie_bits(struct rg_keybuf *k, __u32 plen, __u32 len)
{
	struct rg_filter_val *v;

	k->prefixlen = (plen < RG_FILTER_KEY_LEN ? plen : RG_FILTER_KEY_LEN) * 8;
	v = bpf_map_lookup_elem(&rg_filter_trie, k);
	if (!v)
		return 0;
	return (v->exact && v->exact != len) ? v->fallback : v->verdict;
}

/*
 * Does a suffix with the bits in k->want match the end of the key? 1: yes, 0: no. With
 * `partial` the key is only the path's end ("/" and the file name): 2 when a suffix reaches
 * past it and matched as far as it goes (the whole path would decide).
 */
static __always_inline int suffix_match(struct rg_keybuf *k, struct rg_filter_conf *conf,
					int partial)
{
	__u32 len = k->len;

	for (__u32 i = 0; i < RG_FILTER_MAX_SUFFIXES; i++) {
		if (i >= conf->nr_suffixes)
			break;
		struct rg_suffix *sfx = &conf->suffixes[i & (RG_FILTER_MAX_SUFFIXES - 1)];
		__u8 want = k->want;
		if ((sfx->verdict & want) != want || sfx->len > RG_SUFFIX_LEN ||
		    (sfx->len > len && !partial))
			continue;
		int hit = 1;
		/* compare from the end: mismatches show up at once */
		for (__u32 j = 0; j < RG_SUFFIX_LEN; j++) {
			if (j >= sfx->len)
				break;
			if (j >= len) {
				hit = 2; /* the suffix goes on where the key ends */
				break;
			}
			if (k->data[(len - 1 - j) & KEY_MASK] != sfx->s[(sfx->len - 1 - j) & 31]) {
				hit = 0;
				break;
			}
		}
		if (hit)
			return hit;
	}
	return 0;
}

/* What passes once the trie said `bits`: a suffix or pass_all with the bits still wanted. */
static __always_inline int rest_passes(struct rg_keybuf *k, struct rg_filter_conf *conf,
				       __u8 bits, __u8 need, int partial)
{
	/*
	 * An excluded path passes only what detections and rules look at (RG_V_FORCE). The bits a
	 * suffix needs go through memory so that the verifier sees one state, not one per value.
	 */
	k->want = (bits & RG_V_EXCLUDE) ? need | RG_V_FORCE : need;
	int m = suffix_match(k, conf, partial);
	if (m)
		return m;
	return (conf->pass_all & k->want) == k->want;
}

/*
 * Could a suffix or pass_all pass what wants the bits `want`, whatever the name is? Most
 * configs have no suffix for reads: an unwatched read-only open is then filtered without its
 * name being read.
 */
static __always_inline int rest_may_pass(struct rg_filter_conf *conf, __u8 want)
{
	if ((conf->pass_all & want) == want)
		return 1;
	for (__u32 i = 0; i < RG_FILTER_MAX_SUFFIXES; i++) {
		if (i >= conf->nr_suffixes)
			break;
		if ((conf->suffixes[i].verdict & want) == want)
			return 1;
	}
	return 0;
}

static __always_inline struct rg_filter_conf *filter_conf(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&rg_filter_conf_map, &zero);
}

/*
 * Does the path assembled in the key buffer pass for an operation that needs `need`
 * (RG_V_WATCH or RG_V_READ)? A global function (see common.bpf.h).
 */
__noinline int rg_key_passes(__u32 need)
{
	struct rg_filter_conf *conf = filter_conf();
	struct rg_keybuf *k = rg_keybuf();
	__u8 bits;

	if (!conf || !k)
		return 1;
	bits = trie_bits(k, k->len, k->len);
	if (bits & need)
		return 1; /* never together with RG_V_EXCLUDE */
	return rest_passes(k, conf, bits, need, 0);
}

/* ---- directory verdict cache ------------------------------------------------------------ */

/*
 * Most opens are of files in directories where nothing is watched. The cache remembers, per
 * directory (dentry and mount), the trie's verdict for any file directly in it, so that such an
 * open is judged by its name alone (the suffixes), without walking and building its path.
 *
 * A verdict is cached only when it cannot depend on the name (no trie entry lies below the
 * directory: rg_dir_below, filled by the loader), the walk reached the namespace root, the file
 * system cannot rename behind our back (local ones only), and nothing that changes what paths
 * directories have ran meanwhile. Those syscalls (rename, rmdir, mount, umount, move_mount,
 * pivot_root; native and i386) hold `busy` while they run, which turns the cache off, and bump
 * `gen`, which makes every entry stale. io_uring can rename without a syscall: once a ring is set
 * up (or was before the agent started) the cache is off for good. A reload bumps the epoch.
 */
const volatile __u8 rg_dcache_on = 0; /* [performance] directory_cache */

struct rg_dcache_key {
	__u64 dir; /* struct dentry * */
	__u64 mnt; /* struct vfsmount * */
};

/*
 * A slot is rewritten in place by whichever CPU learns a directory for it, so a reader on another
 * CPU can read one that is being rewritten for another directory: the value repeats its key and
 * carries a checksum of all of it, and a read that does not add up is a miss.
 */
struct rg_dcache_val {
	__u64 gen;
	__u64 epoch;
	__u64 parent;   /* the directory's d_parent and d_name.hash_len when cached: a dentry */
	__u64 hash_len; /* freed and reused for another directory does not match */
	__u64 dir;      /* the key, again */
	__u64 mnt;
	__u64 bits;     /* trie verdict for any file directly in the directory */
	__u64 sum;      /* dcache_sum() of the above */
};

/*
 * The sums are XORs of independent products, one odd multiplier per position: a field (or a
 * path word) that differs changes its product (an odd multiplier is a bijection), so it changes
 * the sum, and the multiplies do not wait on each other as a chained hash's do (they are on
 * every cached open's path).
 */
#define RG_SUM_K(i) (0x9e3779b97f4a7c15ULL + (__u64)(i) * 0x200000000366ULL)

static __always_inline __u64 dcache_sum(const struct rg_dcache_val *v)
{
	return (v->gen * RG_SUM_K(0)) ^ (v->epoch * RG_SUM_K(1)) ^ (v->parent * RG_SUM_K(2)) ^
	       (v->hash_len * RG_SUM_K(3)) ^ (v->dir * RG_SUM_K(4)) ^ (v->mnt * RG_SUM_K(5)) ^
	       (v->bits * RG_SUM_K(6));
}

/*
 * Direct-mapped: a slot per directory by a hash of its key, so that a lookup costs no hash map
 * lookup (an array's is a few instructions); two directories that share a slot take turns in it.
 */
#define RG_DCACHE_SLOTS 16384
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RG_DCACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct rg_dcache_val);
} rg_dcache SEC(".maps");

/* A directory's slot in a direct-mapped cache of `slots` (a power of two) entries. */
static __always_inline __u32 dir_slot(const struct rg_dcache_key *key, __u32 slots)
{
	__u64 h = (key->dir ^ (key->mnt >> 3)) * 0x9e3779b97f4a7c15ULL;

	return (h >> 40) & (slots - 1);
}

struct rg_dcache_state {
	__u64 gen;  /* bumped at the start and the end of each path-changing syscall */
	__u64 busy; /* path-changing syscalls running */
	__u64 off;  /* io_uring is in use, or a path-changing syscall could not be followed */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rg_dcache_state);
} rg_dcache_state_map SEC(".maps");

/* Written by the loader only (start, reload): the filter the cached verdicts come from. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rg_dcache_epoch SEC(".maps");

/* FNV-1a hashes of directory prefixes ("/etc/") that have trie entries below them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u8);
} rg_dir_below SEC(".maps");

/*
 * Fields of one struct read at once: a probe read costs the same for 8 bytes as for 96, and an
 * opened file's mode, inode and path (or an inode's superblock and number) lie that close on
 * every kernel so far. CO-RE gives the offsets, so the span's bounds are constants the verifier
 * knows; a kernel where the fields lie further apart gets a read each.
 */
#define RG_SPAN_MAX 128
#define SPAN_LO(a, b, c) ((a) < (b) ? ((a) < (c) ? (a) : (c)) : ((b) < (c) ? (b) : (c)))
#define SPAN_HI(a, b, c) ((a) > (b) ? ((a) > (c) ? (a) : (c)) : ((b) > (c) ? (b) : (c)))

struct rg_file_fields {
	struct path path;
	struct inode *inode;
	__u64 mode;
};

/*
 * The paths of directories whose files pass by the directory alone (their cached verdict has the
 * bit an open needs), so that such an open is reported without walking its path: the
 * directory's path from here, the file's name from its dentry. An entry is valid exactly as long
 * as the directory's verdict would be (the same gen, epoch, parent and name), and is checked
 * whole, path included, on a copy: another CPU can rewrite it while it is read. Direct-mapped
 * (an array slot per directory by a hash of its key: no hash map lookup on the hot path); two
 * directories that share a slot take turns in it.
 */
#define RG_DPATH_LEN 256 /* the longest directory path cached: a trie key's */
struct rg_dpath_val {
	struct rg_dcache_val v; /* as the directory's verdict was learned (v.sum unused) */
	__u64 len;              /* of path, its trailing slash included */
	__u64 sum;              /* dpath_sum() */
	__u8 path[RG_DPATH_LEN];
};

#define RG_DPATH_SLOTS 1024
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RG_DPATH_SLOTS);
	__type(key, __u32);
	__type(value, struct rg_dpath_val);
} rg_dpath SEC(".maps");

/* Per CPU: where an entry is built before it is stored, and copied to before it is used. */
struct rg_dpath_buf {
	struct rg_dpath_val dp;
	struct rg_dentry_up dir_up; /* the directory's, as dcache_get() last found it valid */
	struct rg_dentry_up file_up; /* the opened file's (rg_dcache_may_pass(), file_dpath()) */
	__u8 span[RG_SPAN_MAX];     /* a struct's fields read at once (see RG_SPAN_MAX) */
	struct rg_file_fields file; /* file_fields() */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rg_dpath_buf);
} rg_dpath_bufs SEC(".maps");

/* dcache_sum()'s kind of sum over a verdict entry, a path's length and its words (the last
 * one zero-padded) */
static __always_inline __u64 dpath_sum(const struct rg_dcache_val *v, __u64 len, const __u8 *path)
{
	__u64 h = dcache_sum(v) ^ (len * RG_SUM_K(7));

	for (__u32 i = 0; i < RG_DPATH_LEN / 8; i++) {
		__u32 at = i * 8;
		if (at >= len)
			break;
		__u64 w = *(const __u64 *)&path[at];
		__u32 rem = len - at;
		if (rem < 8)
			w &= (1ULL << (rem * 8)) - 1;
		h ^= w * RG_SUM_K(8 + i);
	}
	return h;
}

/* magic numbers of the file systems whose directories only move by syscalls seen here */
#define EXT4_SUPER_MAGIC 0xEF53
#define XFS_SUPER_MAGIC 0x58465342
#define BTRFS_SUPER_MAGIC 0x9123683E
#define TMPFS_MAGIC 0x01021994
#define RAMFS_MAGIC 0x858458f6

static __always_inline struct rg_dcache_state *dcache_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&rg_dcache_state_map, &zero);
}

static __always_inline __u64 dcache_epoch(void)
{
	__u32 zero = 0;
	__u64 *e = bpf_map_lookup_elem(&rg_dcache_epoch, &zero);
	return e ? *e : 0;
}

/* A path-changing syscall starts (1) or ends (-1). */
static __always_inline void dcache_busy(__s64 delta)
{
	struct rg_dcache_state *st = dcache_state();

	if (!st)
		return;
	__sync_fetch_and_add(&st->gen, 1);
	__sync_fetch_and_add(&st->busy, delta);
}

static __always_inline void dcache_off(void)
{
	struct rg_dcache_state *st = dcache_state();

	if (st)
		st->off = 1;
}

static __always_inline struct rg_dpath_buf *dpath_buf(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&rg_dpath_bufs, &zero);
}

/* An opened file's path, inode and mode, into the per-CPU buffer's `file`. */
static __always_inline struct rg_file_fields *file_fields(struct file *f, struct rg_dpath_buf *b)
{
	__u32 om = bpf_core_field_offset(struct file, f_mode);
	__u32 oi = bpf_core_field_offset(struct file, f_inode);
	__u32 op = bpf_core_field_offset(struct file, f_path);
	__u32 lo = SPAN_LO(om, oi, op), n = SPAN_HI(om + 4, oi + 8, op + 16) - lo;
	struct rg_file_fields *ff = &b->file;

	if (rg_btf_loads) {
		struct file *bf = rg_btf(struct file, f);

		ff->mode = bf->f_mode;
		ff->inode = bf->f_inode;
		ff->path.dentry = bf->f_path.dentry;
		ff->path.mnt = bf->f_path.mnt;
		rg_reload(); /* callers read the pointers back as numbers (see rg_btf_loads) */
	} else if (n <= RG_SPAN_MAX) {
		bpf_probe_read_kernel(b->span, n, (void *)f + lo);
		ff->mode = *(__u32 *)&b->span[om - lo];
		ff->inode = *(struct inode **)&b->span[oi - lo];
		__builtin_memcpy(&ff->path, &b->span[op - lo], sizeof(ff->path));
	} else {
		bpf_probe_read_kernel(&ff->path, sizeof(ff->path), &f->f_path);
		ff->inode = BPF_CORE_READ(f, f_inode);
		ff->mode = BPF_CORE_READ(f, f_mode);
	}
	return ff;
}

/* An inode's number and device (i_sb and i_ino read at once: see RG_SPAN_MAX). */
static __always_inline void inode_key(struct inode *inode, struct rg_inode_key *key)
{
	__u32 os = bpf_core_field_offset(struct inode, i_sb);
	__u32 oi = bpf_core_field_offset(struct inode, i_ino);
	__u32 lo = os < oi ? os : oi, n = (os > oi ? os : oi) + 8 - lo;
	struct rg_dpath_buf *b;
	struct super_block *sb;

	if (rg_btf_loads) {
		struct inode *bi = rg_btf(struct inode, inode);

		key->ino = bi->i_ino;
		key->dev = bi->i_sb->s_dev;
		key->_pad = 0;
		return;
	}
	if (n <= RG_SPAN_MAX && (b = dpath_buf())) {
		bpf_probe_read_kernel(b->span, n, (void *)inode + lo);
		sb = *(struct super_block **)&b->span[os - lo];
		key->ino = *(__u64 *)&b->span[oi - lo];
	} else {
		sb = BPF_CORE_READ(inode, i_sb);
		key->ino = BPF_CORE_READ(inode, i_ino);
	}
	key->dev = BPF_CORE_READ(sb, s_dev);
	key->_pad = 0;
}

/* Is the inode (its key read already) one of the inventory's persistence files? */
static __always_inline int persist_key(const struct rg_inode_key *key, struct inode *inode)
{
	__u32 *gen;

	if (!key->ino || !(gen = bpf_map_lookup_elem(&rg_persist_inodes, key)))
		return 0;
	return !*gen || *gen == BPF_CORE_READ(inode, i_generation);
}

static __always_inline int persist_inode(struct inode *inode)
{
	struct rg_inode_key key;

	inode_key(inode, &key);
	return persist_key(&key, inode);
}

/* rg_dentry_up() into `up`, which is map memory: by BTF loads where the kernel has them. */
static __always_inline void dentry_up(struct dentry *d, struct rg_dentry_up *up)
{
	if (rg_btf_loads) {
		struct dentry *bd = rg_btf(struct dentry, d);

		up->parent = bd->d_parent;
		up->hash_len = bd->d_name.hash_len;
		up->name = bd->d_name.name;
		rg_reload(); /* callers read the parent back as a number (see rg_btf_loads) */
	} else {
		rg_dentry_up(d, up);
	}
}

/* The cached verdict bits for files directly in `dir` on `mnt`, or -1 (b: the per-CPU buffer). */
static __always_inline int dcache_get(struct rg_dpath_buf *b, struct dentry *dir,
				      struct vfsmount *mnt)
{
	struct rg_dcache_state *st = dcache_state();
	struct rg_dcache_key key = {.dir = (__u64)dir, .mnt = (__u64)mnt};
	struct rg_dcache_val *vp, v;

	if (!st || st->busy || st->off)
		return -1;
	__u32 slot = dir_slot(&key, RG_DCACHE_SLOTS);
	vp = bpf_map_lookup_elem(&rg_dcache, &slot);
	if (!vp)
		return -1;
	__builtin_memcpy(&v, vp, sizeof(v));
	if (v.sum != dcache_sum(&v) || v.dir != key.dir || v.mnt != key.mnt ||
	    v.gen != st->gen || v.epoch != dcache_epoch())
		return -1;
	dentry_up(dir, &b->dir_up); /* kept for rg_dpath_fill(), not to read it again */
	if (v.parent != (__u64)b->dir_up.parent || v.hash_len != b->dir_up.hash_len)
		return -1;
	return v.bits & 0xff;
}

/* Where rg_dpath_fill() puts a path: as rg_walk() would (into s->path, ending at RG_PATH_MAX),
 * or straight into the record, as its first string (where event_init() leaves s->pos). */
#define RG_DPATH_TO_REC 1
#define RG_DPATH_DIR_CHECKED 2 /* dcache_get() just found the directory valid: its d_parent and
				* d_name are in the buffer */

/*
 * The path of the file named (name, namelen) directly in `dir` on `mnt`, from the path cache,
 * put where `how` says: returns RG_PATH_MAX minus its length, or 0 when the cache has no valid
 * path for the directory (then walk). Global (see common.bpf.h).
 */
__noinline __u32 rg_dpath_fill(__u64 dir, __u64 mnt, __u64 name, __u32 namelen, __u32 how)
{
	struct rg_dcache_state *st = dcache_state();
	struct rg_dcache_key key = {.dir = dir, .mnt = mnt};
	struct rg_dpath_buf *b = dpath_buf();
	struct rg_scratch *s = rg_scratch();
	struct rg_dpath_val *vp;
	__u8 *to;

	if (!rg_dcache_on || !s || !b || !st || st->busy || st->off || !namelen ||
	    namelen >= RG_DPATH_LEN)
		return 0;
	__u32 slot = dir_slot(&key, RG_DPATH_SLOTS);
	vp = bpf_map_lookup_elem(&rg_dpath, &slot);
	if (!vp)
		return 0;
	/* the entry's fixed part by plain loads, its path by one read of its length only, and the
	 * whole checked on those copies (another CPU may be rewriting the slot) */
	struct rg_dpath_val *dp = &b->dp;
	__builtin_memcpy(dp, vp, offsetof(struct rg_dpath_val, path));
	__u32 dlen = dp->len;
	if (!dlen || dlen >= RG_DPATH_LEN || dp->v.dir != dir || dp->v.mnt != mnt ||
	    dp->v.gen != st->gen || dp->v.epoch != dcache_epoch())
		return 0;
	if (!(how & RG_DPATH_DIR_CHECKED))
		dentry_up((struct dentry *)dir, &b->dir_up);
	if (dp->v.parent != (__u64)b->dir_up.parent || dp->v.hash_len != b->dir_up.hash_len)
		return 0;
	__u32 off = (RG_PATH_MAX - dlen - namelen) & PATH_MASK;
	/* into the record straight away; s->path's place varies, so there by way of the buffer */
	__u8 *copy = (how & RG_DPATH_TO_REC) ? &s->rec[sizeof(struct rg_file_event)] : dp->path;
	bpf_probe_read_kernel(copy, dlen & (RG_DPATH_LEN - 1), vp->path);
	if (dp->sum != dpath_sum(&dp->v, dlen, copy))
		return 0;
	to = copy;
	if (!(how & RG_DPATH_TO_REC)) {
		to = &s->path[off];
		bpf_probe_read_kernel(to, dlen & (RG_DPATH_LEN - 1), dp->path);
	}
	bpf_probe_read_kernel(to + (dlen & (RG_DPATH_LEN - 1)), namelen & (RG_DPATH_LEN - 1),
			      (const void *)name);
	s->walk_root = 1;
	return off;
}

/* Remember the path of directory `key` (the key buffer's first `dlen` bytes), verdict `v`. */
static __always_inline void dpath_learn(struct rg_keybuf *k, const struct rg_dcache_key *key,
					const struct rg_dcache_val *v, __u32 dlen)
{
	struct rg_dpath_buf *b = dpath_buf();
	struct rg_dpath_val *dp = b ? &b->dp : NULL;

	if (!dp || !dlen || dlen >= RG_DPATH_LEN)
		return;
	__builtin_memcpy(&dp->v, v, sizeof(*v));
	dp->len = dlen;
	bpf_probe_read_kernel(dp->path, dlen & (RG_DPATH_LEN - 1), k->data);
	dp->sum = dpath_sum(&dp->v, dlen, dp->path);
	__u32 slot = dir_slot(key, RG_DPATH_SLOTS);

	bpf_map_update_elem(&rg_dpath, &slot, dp, BPF_ANY);
}

/* What the cache says of an opened file. */
enum rg_dcache_says {
	RG_DC_FILTERED = 0, /* it cannot pass: filtered without its path being built */
	RG_DC_UNKNOWN = 1,  /* no verdict for its directory: walk, and learn one */
	RG_DC_KNOWN = 2,    /* its directory's verdict is cached; the walk decides the rest */
	RG_DC_PASSES = 3,   /* it passes, and its path is the record's first string: RG_PATH_MAX
			     * minus its length is (says >> 8) */
};

/* A global function (see common.bpf.h): the unwatched open's hot path, and its biggest loop. */
__noinline int rg_dcache_may_pass(__u64 dentry, __u64 mnt, __u32 need)
{
	struct rg_dpath_buf *b = dpath_buf();
	struct rg_filter_conf *conf;
	struct rg_keybuf *k;

	if (!rg_dcache_on)
		return RG_DC_KNOWN; /* nothing to learn */
	if (!b)
		return RG_DC_UNKNOWN;
	dentry_up((struct dentry *)dentry, &b->file_up);
	__u64 parent = (__u64)b->file_up.parent, name = (__u64)b->file_up.name;
	__u32 len = b->file_up.hash_len >> 32;
	/*
	 * A mount root's path is its mountpoint's, not its parent's. A file system's root is its
	 * own parent: never judged by the cache. Another mount root (a bind mount of a directory
	 * or a file) has a parent outside its mount, so no (parent, mount) entry is ever learned
	 * for it (rg_dcache_learn() skips mount roots, and no other file of that mount has that
	 * parent): its lookup misses without reading the mount.
	 */
	if (parent == dentry)
		return RG_DC_UNKNOWN;
	int bits = dcache_get(b, (struct dentry *)parent, (struct vfsmount *)mnt);
	if (bits < 0)
		return RG_DC_UNKNOWN;
	if (bits & need) {
		/* any file there passes: its path from the cache, or walk and learn it */
		__u32 off = rg_dpath_fill(parent, mnt, name, len,
					  RG_DPATH_TO_REC | RG_DPATH_DIR_CHECKED);
		return off ? RG_DC_PASSES | off << 8 : RG_DC_UNKNOWN;
	}
	conf = filter_conf();
	if (!conf)
		return RG_DC_KNOWN;
	if (!rest_may_pass(conf, (bits & RG_V_EXCLUDE) ? need | RG_V_FORCE : need))
		return RG_DC_FILTERED;
	/* the suffixes see "/" and the name */
	k = rg_keybuf();
	if (!k || len > RG_FILTER_KEY_LEN - 2)
		return RG_DC_KNOWN;
	k->data[0] = '/';
	barrier_var(len); /* keep the mask: older verifiers lose the range above through a spill */
	bpf_probe_read_kernel(&k->data[1], len & (RG_FILTER_KEY_LEN - 1), (const void *)name);
	k->len = len + 1;
	return rest_passes(k, conf, bits, need, 1) ? RG_DC_KNOWN : RG_DC_FILTERED;
}

/* What the cache must know when a walk starts, to tell whether anything moved meanwhile. */
struct rg_dcache_snap {
	__u64 gen;
	__u64 epoch;
	int ok;
};

static __always_inline void dcache_snap(struct rg_dcache_snap *snap)
{
	struct rg_dcache_state *st = dcache_state();

	snap->ok = rg_dcache_on && st && !st->busy && !st->off;
	snap->gen = st ? st->gen : 0;
	snap->epoch = dcache_epoch();
}

/*
 * FNV-1a over the first `dlen` bytes of the key, a little-endian 64-bit word at a time (the
 * last one zero-padded): loader.dir_hash() computes the same for the prefixes it lists.
 */
static __always_inline __u64 dir_hash(struct rg_keybuf *k, __u32 dlen)
{
	__u64 h = 0xcbf29ce484222325ULL;

	for (__u32 i = 0; i < RG_FILTER_KEY_LEN / 8; i++) {
		__u32 at = i * 8;
		if (at >= dlen)
			break;
		__u64 w = *(const __u64 *)&k->data[at & KEY_MASK];
		__u32 rem = dlen - at;
		if (rem < 8)
			w &= (1ULL << (rem * 8)) - 1;
		h = (h ^ w) * 0x100000001b3ULL;
	}
	return h;
}

static __always_inline int local_fs(struct dentry *d)
{
	unsigned long magic = BPF_CORE_READ(d, d_sb, s_magic);

	return magic == EXT4_SUPER_MAGIC || magic == XFS_SUPER_MAGIC ||
	       magic == BTRFS_SUPER_MAGIC || magic == TMPFS_MAGIC || magic == RAMFS_MAGIC;
}

/*
 * After a walk of `f`'s path into the key (whole, to the namespace root): remember the verdict
 * of its directory when it cannot depend on the name and nothing moved since `snap`.
 */
__noinline int rg_dcache_learn(__u64 file, __u64 gen, __u64 epoch, __u32 ok)
{
	struct rg_dcache_state *st = dcache_state();
	struct rg_scratch *s = rg_scratch();
	struct rg_keybuf *k = rg_keybuf();
	struct file *f = (struct file *)file;
	struct rg_dentry_up up, dir_up;
	struct path p;

	if (!ok || !s || !k || !s->walk_root || !st)
		return 0;
	bpf_probe_read_kernel(&p, sizeof(p), &f->f_path);
	struct dentry *d = p.dentry;
	struct vfsmount *mnt = p.mnt;
	if (d == BPF_CORE_READ(mnt, mnt_root) || !local_fs(d))
		return 0;
	rg_dentry_up(d, &up);
	__u32 len = k->len, namelen = up.hash_len >> 32;
	__u32 dlen = len - namelen;
	if (!namelen || namelen >= len || dlen >= RG_FILTER_KEY_LEN ||
	    k->data[(dlen - 1) & KEY_MASK] != '/')
		return 0;
	__u64 h = dir_hash(k, dlen);
	if (bpf_map_lookup_elem(&rg_dir_below, &h))
		return 0; /* the name decides */
	struct dentry *dir = up.parent;
	struct rg_dcache_key key = {.dir = (__u64)dir, .mnt = (__u64)mnt};

	rg_dentry_up(dir, &dir_up);
	struct rg_dcache_val v = {
		.gen = gen,
		.epoch = epoch,
		.parent = (__u64)dir_up.parent,
		.hash_len = dir_up.hash_len,
		.dir = key.dir,
		.mnt = key.mnt,
		.bits = trie_bits(k, dlen, len), /* any longer path: as long as this one */
	};
	v.sum = dcache_sum(&v);
	if (st->busy || st->off || st->gen != gen || dcache_epoch() != epoch)
		return 0;
	__u32 slot = dir_slot(&key, RG_DCACHE_SLOTS);

	bpf_map_update_elem(&rg_dcache, &slot, &v, BPF_ANY);
	if (v.bits & (RG_V_WATCH | RG_V_READ))
		dpath_learn(k, &key, &v, dlen);
	return 0;
}

/* 0x80 in each byte of x that equals the byte repeated in pat, 0 elsewhere (exact). */
static __always_inline __u64 bytes_equal(__u64 x, __u64 pat)
{
	__u64 y = x ^ pat, low7 = 0x7f7f7f7f7f7f7f7fULL;

	return ~(((y & low7) + low7) | y | low7);
}

/*
 * Can the name's text differ from the path it names? True for `.` and `..` components, `//`
 * and a trailing slash: then the kernel cannot judge the prefix and leaves the decision to
 * userspace. Hidden files (`/.bashrc`) are not such a case. Eight bytes a step, patterns found
 * by where they end: a byte flag shifted by m bytes, the previous word supplying what moves
 * in, is the flag of the byte m before. A name longer than RG_NORM_MAX is left to userspace
 * too: every step is a state the verifier explores, and names that long are rare. Global (the
 * name is at `off` in the scratch record): see common.bpf.h.
 */
#define RG_NORM_MAX 512
#define BACK(x, px, m) (((x) << (8 * (m))) | ((px) >> (64 - 8 * (m))))
__noinline int rg_name_needs_normalizing(__u32 off, __u32 len)
{
	struct rg_scratch *s = rg_scratch();

	if (!s || len >= RG_NORM_MAX)
		return 1;
	const __u8 *rec = s->rec;
	__u64 hit = 0, pd = 0;
	/* a relative name follows the slash that joins it to its directory */
	__u64 ps = rec[off & REC_MASK] == '/' ? 0 : 0x8000000000000000ULL;

	for (__u32 i = 0; i < RG_NORM_MAX / 8; i++) {
		__u32 at = i * 8;
		if (at > len)
			break;
		__u32 rem = len - at; /* 0 on the step past a name that ends on a word boundary */
		__u64 valid = rem >= 8 ? ~0ULL : (1ULL << ((rem & 7) * 8)) - 1;
		__u64 w = *(const __u64 *)&rec[(off + at) & REC_MASK];
		__u64 sl = bytes_equal(w, 0x2f2f2f2f2f2f2f2fULL) & valid;
		__u64 d = bytes_equal(w, 0x2e2e2e2e2e2e2e2eULL) & valid;
		/* where a component may end: a slash, or the end of the name */
		__u64 e = sl | (rem < 8 ? 0x80ULL << ((rem & 7) * 8) : 0);

		hit |= sl & BACK(sl, ps, 1);                                  /* // */
		hit |= e & BACK(d, pd, 1) & BACK(sl, ps, 2);                  /* /.  */
		hit |= e & BACK(d, pd, 1) & BACK(d, pd, 2) & BACK(sl, ps, 3); /* /.. */
		ps = sl;
		pd = d;
	}
	/* a trailing slash also changes the text (x.service/ names x.service) */
	return hit != 0 || (len && rec[(off + len - 1) & REC_MASK] == '/');
}

/* The directory a name passed with `dfd` is relative to. */
static __always_inline const struct path *dir_of(struct task_struct *task, int dfd)
{
	if (dfd == AT_FDCWD) {
		struct fs_struct *fs = BPF_CORE_READ(task, fs);
		return &fs->pwd;
	}
	struct file *f = rg_fd_file(dfd);
	return f ? &f->f_path : NULL;
}

/* The fixed part of a file event for the current task. */
static __always_inline struct rg_file_event *event_init(struct rg_scratch *s,
						       const struct rg_inflight *in, long ret,
						       __u8 fflags)
{
	struct rg_file_event *e = (void *)s->rec;

	__builtin_memset(e, 0, sizeof(*e));
	s->pos = sizeof(*e);
	rg_fill_header(&e->hdr, RG_KIND_FILE);
	e->ret = ret;
	e->flags = in->flags;
	e->syscall = in->syscall;
	e->op = in->op;
	e->fd = in->dfd;
	e->fflags = fflags;
	e->abi = in->abi;
	e->ppid = rg_current_ppid();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

static __always_inline void event_set_inode(struct rg_file_event *e, struct file *f)
{
	struct rg_inode_key ik;

	inode_key(BPF_CORE_READ(f, f_inode), &ik);
	e->ino = ik.ino;
	e->dev = ik.dev;
}

static __always_inline void event_submit(struct rg_scratch *s)
{
	struct rg_file_event *e = (void *)s->rec;
	__u32 size = s->pos;

	e->hdr.size = size;
	rg_submit(s->rec, size, RG_FAM_FILE);
}

/* A string slot's offset in a file record fits in one byte (rg_put_name's packed arguments). */
#define SLOT_MASK 255
_Static_assert(__builtin_offsetof(struct rg_file_event, name2) + sizeof(struct rg_str) <= SLOT_MASK,
	       "rg_file_event's string slots lie past the first 256 bytes");

/*
 * Put (dfd, name) into the record as slots dir+name (or dir2+name2) and judge it: `name` is a
 * user pointer, or with `kern` a kernel string (io_uring's copy). Returns 1 when the path passes
 * the filter for `need`. A global function (see common.bpf.h): its arguments come packed
 * (slots: the two slots' offsets in the record, a byte each; truncs: their RG_HF_TRUNC_* flags,
 * 16 bits each; need_kern: `need`, and 0x100 for `kern`) by put_name_from().
 */
__noinline int rg_put_name(__s32 dfd, __u64 uname, __u32 slots, __u32 truncs, __u32 need_kern)
{
	struct rg_scratch *s = rg_scratch();
	struct rg_keybuf *k = rg_keybuf();
	int trunc = 0;

	if (!s || !k)
		return 1;
	struct rg_file_event *e = (void *)s->rec;
	struct rg_str *dir = (void *)&s->rec[(slots & 0xff) & SLOT_MASK];
	struct rg_str *name = (void *)&s->rec[(slots >> 8) & SLOT_MASK];
	__u16 dir_trunc = truncs & 0xffff, name_trunc = truncs >> 16;
	__u8 need = need_kern & 0xff;

	if (rg_put_str(s, (const char *)uname, &s->pos, name, need_kern >> 8))
		e->hdr.flags |= name_trunc;
	if (!name->len)
		return 1; /* unreadable: let userspace see what it can */
	key_reset(k);
	if (s->rec[name->off & REC_MASK] != '/') {
		const struct path *p = dir_of((void *)bpf_get_current_task(), dfd);
		if (p) {
			__u32 off = rg_walk_path(p, &trunc);
			rg_put_walked(s, off, &s->pos, dir);
			if (trunc) {
				e->hdr.flags |= dir_trunc;
				return 1; /* no prefix to judge: userspace reports it, marked */
			}
			if (dir->len) {
				key_append(k, &s->rec[dir->off & REC_MASK], dir->len & PATH_MASK);
				if (dir->len > 1)
					key_append(k, "/", 1);
			}
		}
	}
	key_append(k, &s->rec[name->off & REC_MASK], name->len & PATH_MASK);
	if (rg_name_needs_normalizing(name->off, name->len))
		return 1;
	return rg_key_passes(need);
}

static __always_inline int put_name_from(struct rg_scratch *s, int dfd, const char *uname,
					 struct rg_str *dir, struct rg_str *name,
					 __u16 dir_trunc, __u16 name_trunc, __u8 need, int kern)
{
	return rg_put_name(dfd, (__u64)uname,
			   (__u32)((__u8 *)dir - s->rec) | (__u32)((__u8 *)name - s->rec) << 8,
			   dir_trunc | (__u32)name_trunc << 16, need | (kern ? 0x100 : 0));
}

static __always_inline int put_name(struct rg_scratch *s, int dfd, const char *uname,
				    struct rg_str *dir, struct rg_str *name,
				    __u16 dir_trunc, __u16 name_trunc, __u8 need)
{
	return put_name_from(s, dfd, uname, dir, name, dir_trunc, name_trunc, need, 0);
}

/*
 * Is the key (a directory's path) above paths the filter names (rg_dir_below), and `op` a call
 * that matters there: a mount hides what is below, an umount uncovers it, a new directory (a
 * new ~/.ssh) will hold it.
 */
static __always_inline int key_above_watched(struct rg_keybuf *k, __u8 op)
{
	__u32 len = k->len;

	if ((op != RG_OP_MOUNT && op != RG_OP_UMOUNT && op != RG_OP_MKDIR) || !len ||
	    len >= RG_FILTER_KEY_LEN - 1)
		return 0;
	if (k->data[(len - 1) & KEY_MASK] != '/') {
		key_append(k, "/", 1);
		len++;
	}
	__u64 h = dir_hash(k, len);
	return bpf_map_lookup_elem(&rg_dir_below, &h) != NULL;
}

/* Walk a path into s->path and make it the filter's candidate key; returns the walk's offset. */
static __always_inline __u32 walk_to_key(struct rg_scratch *s, struct rg_keybuf *k,
					 const struct path *p, int *trunc)
{
	__u32 off = rg_walk_path(p, trunc);

	key_reset(k);
	key_append(k, &s->path[off & PATH_MASK], (RG_PATH_MAX - off) & PATH_MASK);
	return off;
}

/* 1: stashed; 0: the agent's own call, not followed; -1: the table was full (counted). */
static __always_inline int stash(struct rg_inflight *in)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (rg_is_self())
		return 0;
	/* a full in-flight table loses the event: counted */
	if (bpf_map_update_elem(&rg_inflight_map, &tid, in, BPF_ANY)) {
		rg_count(&rg_table_full, RG_FAM_FILE);
		return -1;
	}
	return 1;
}

#define AT_REMOVEDIR 0x200

/* Can this call change what path a directory has? (The agent's own calls cannot: it makes
 * none that move a directory.) */
static __always_inline int moves_dirs(__u16 sys, __u64 flags)
{
	switch (sys) {
	case RG_SYS_RENAME:
	case RG_SYS_RENAMEAT:
	case RG_SYS_RENAMEAT2:
	case RG_SYS_RMDIR:
	case RG_SYS_MOUNT:
	case RG_SYS_UMOUNT:
	case RG_SYS_UMOUNT2:
	case RG_SYS_MOVE_MOUNT:
	case RG_SYS_PIVOT_ROOT:
		return 1;
	case RG_SYS_UNLINKAT:
		return (flags & AT_REMOVEDIR) != 0;
	}
	return 0;
}

/* Stash, and for a path-changing call hold the directory cache off until its exit. */
static __always_inline void stash_noting_moves(struct rg_inflight *in)
{
	in->dcache = moves_dirs(in->syscall, in->flags);
	int r = stash(in);

	if (!in->dcache)
		return;
	if (r > 0)
		dcache_busy(1);
	else if (r < 0)
		dcache_off(); /* its exit cannot be matched: no more caching this run */
}

/* The arguments this thread stashed at sys_enter, taken out of the map. */
static __always_inline int unstash(struct rg_inflight *out)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct rg_inflight *in = bpf_map_lookup_elem(&rg_inflight_map, &tid);

	if (!in)
		return 0;
	*out = *in;
	bpf_map_delete_elem(&rg_inflight_map, &tid);
	return 1;
}

/* ---- open family ------------------------------------------------------------------------ */

static __always_inline int open_is_write(__u64 flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC));
}

static __always_inline void watch_file(struct file *f, struct dentry *dentry)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, one = 1;
	struct rg_watched w = {
		.dentry = (__u64)dentry,
	};
	__u64 key = (__u64)f;
	struct rg_watched *was = bpf_map_lookup_elem(&rg_watched_files, &key);

	/* a struct file freed and reused for the same file has its entry as new already (an LRU
	 * update allocates: a lookup is cheaper) */
	if (!was || was->dentry != w.dentry || was->reported)
		bpf_map_update_elem(&rg_watched_files, &key, &w, BPF_ANY);
	/* usually there already: a lookup is cheaper than an update */
	if (!bpf_map_lookup_elem(&rg_watched_procs, &tgid) &&
	    bpf_map_update_elem(&rg_watched_procs, &tgid, &one, BPF_ANY))
		rg_count(&rg_table_full, RG_FAM_FILE); /* full: its writes will not be seen */
}

/* Is `f` an open file tracked for writes (and still the same one)? */
static __always_inline int watched(struct file *f)
{
	__u64 key = (__u64)f;
	struct rg_watched *w = bpf_map_lookup_elem(&rg_watched_files, &key);

	return w && w->dentry == (__u64)BPF_CORE_READ(f, f_path.dentry);
}

static __always_inline __u64 open_how_flags(const struct open_how *how)
{
	__u64 flags = 0;

	if (how)
		bpf_probe_read_user(&flags, sizeof(flags), &how->flags);
	return flags;
}

/* An open's arguments, read at sys_exit from the registers the kernel took them from. */
static __always_inline int open_args(const struct pt_regs *regs, struct rg_inflight *in)
{
	struct rg_sysinfo *si = rg_sys_lookup(regs->orig_ax);

	if (!si || rg_is_self())
		return 0;
	__u8 abi = si->abi;

	in->syscall = si->id;
	in->abi = abi;
	in->op = RG_OP_OPEN;
	switch (si->id) {
	case RG_SYS_OPEN:
		in->dfd = AT_FDCWD;
		in->name = rg_arg(regs, 0, abi);
		in->flags = (__u32)rg_arg(regs, 1, abi);
		break;
	case RG_SYS_CREAT:
		in->dfd = AT_FDCWD;
		in->name = rg_arg(regs, 0, abi);
		in->flags = O_CREAT | O_TRUNC | 1;
		break;
	case RG_SYS_OPENAT:
		in->dfd = (int)rg_arg(regs, 0, abi);
		in->name = rg_arg(regs, 1, abi);
		in->flags = (__u32)rg_arg(regs, 2, abi);
		break;
	case RG_SYS_OPEN_BY_HANDLE_AT: /* (mount_fd, handle, flags): no name at all */
		in->dfd = (int)rg_arg(regs, 0, abi);
		in->flags = (__u32)rg_arg(regs, 2, abi);
		break;
	default: /* openat2 */
		in->dfd = (int)rg_arg(regs, 0, abi);
		in->name = rg_arg(regs, 1, abi);
		in->flags = open_how_flags((void *)rg_arg(regs, 2, abi));
	}
	return 1;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(rg_file_exit_open, struct pt_regs *regs, long ret)
{
	struct rg_inflight in_copy = {};
	struct rg_scratch *s;
	struct rg_keybuf *k;
	int trunc = 0;

	if (!open_args(regs, &in_copy))
		return 0;

	int write = open_is_write(in_copy.flags);
	__u8 need = write ? RG_V_WATCH : RG_V_READ;
	struct rg_file_event *e;

	if (ret >= 0) {
		struct file *f = rg_fd_file(ret);
		struct rg_dcache_snap snap = {}; /* 5.10 reads no stack that was not written */

		if (!f)
			return 0;
		struct rg_dpath_buf *b = dpath_buf();
		if (!b)
			return 0;
		struct rg_file_fields *ff = file_fields(f, b);
		struct inode *inode = ff->inode;
		struct rg_inode_key ik = {};
		int pinned = 0;

		/* a write to a persistence file through any of its names passes (a read-only open
		 * does not need the inode unless it is reported) */
		if (write) {
			inode_key(inode, &ik);
			pinned = persist_key(&ik, inode);
		}
		int says = rg_dcache_may_pass((__u64)ff->path.dentry, (__u64)ff->path.mnt, need);
		int cached = (says & 0xff) == RG_DC_PASSES;
		__u32 off;
		if (says == RG_DC_FILTERED && !pinned)
			return filtered();
		/* (the scratch areas only now: an open filtered above needs neither) */
		s = rg_scratch();
		k = rg_keybuf();
		if (!s || !k)
			return 0;
		if (cached) {
			off = (says >> 8) & PATH_MASK; /* the cache put the path into the record */
		} else {
			if (says == RG_DC_UNKNOWN)
				dcache_snap(&snap);
			off = walk_to_key(s, k, &f->f_path, &trunc);
			if (!trunc && says == RG_DC_UNKNOWN)
				rg_dcache_learn((__u64)f, snap.gen, snap.epoch, snap.ok);
			/* a path cut at RG_PATH_MAX has lost its prefix: userspace reports it, marked */
			if (!trunc && !pinned && !rg_key_passes(need))
				return filtered();
		}
		/* the record is built only for what passed (the walk wrote to s->path, the cache
		 * past the record's fixed part) */
		e = event_init(s, &in_copy, ret,
			       (write ? RG_FF_WRITE : 0) | (pinned ? RG_FF_INODE : 0));
		if (trunc)
			e->hdr.flags |= RG_HF_TRUNC_S0;
		if (cached) {
			e->path.off = s->pos;
			e->path.len = RG_PATH_MAX - off;
			s->pos += RG_PATH_MAX - off;
		} else {
			rg_put_walked(s, off, &s->pos, &e->path);
		}
		if (rg_put_user_str(s, (const char *)in_copy.name, &s->pos, &e->name))
			e->hdr.flags |= RG_HF_TRUNC_S2;
		if (ff->mode & FMODE_CREATED)
			e->fflags |= RG_FF_CREATED;
		if (!write)
			inode_key(inode, &ik);
		e->ino = ik.ino;
		e->dev = ik.dev;
		if (write)
			watch_file(f, ff->path.dentry);
	} else {
		if (!(s = rg_scratch()))
			return 0;
		e = event_init(s, &in_copy, ret, write ? RG_FF_WRITE : 0);
		if (!put_name(s, in_copy.dfd, (const char *)in_copy.name, &e->dir,
			      &e->name, RG_HF_TRUNC_S1, RG_HF_TRUNC_S2, need))
			return filtered();
	}
	event_submit(s);
	return 0;
}

/* ---- write family ----------------------------------------------------------------------- */

SEC("tp_btf/sys_enter")
int BPF_PROG(rg_file_enter_write, struct pt_regs *regs, long nr)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (!bpf_map_lookup_elem(&rg_watched_procs, &tgid) || rg_is_self())
		return 0;

	struct rg_sysinfo *si = rg_sys_lookup(nr);
	if (!si)
		return 0;
	/* the fd written to: copy_file_range and splice write to their second fd */
	__u16 sys = si->id;
	__u8 abi = si->abi;
	int fd = (int)rg_arg(regs, (sys == RG_SYS_COPY_FILE_RANGE || sys == RG_SYS_SPLICE) ? 2 : 0,
			     abi);
	struct file *f = rg_fd_file(fd);

	if (!watched(f))
		return 0;
	struct rg_inflight in = {
		.syscall = sys, .op = RG_OP_WRITE, .abi = abi, .dfd = fd, .file = (__u64)f,
	};
	stash(&in);
	return 0;
}

/*
 * Is a write with result `ret` to the tracked open file `file` reported? Its first success is,
 * and a failure before it (once): the file is then done with, or marked.
 */
static __always_inline int write_reported(__u64 file, long ret)
{
	struct rg_watched *w = bpf_map_lookup_elem(&rg_watched_files, &file);

	if (!w || (ret < 0 && (w->reported & RG_REPORTED_ERR)))
		return 0;
	if (ret >= 0)
		/* nothing more to say about this open file: its next writes return after one
		 * lookup */
		bpf_map_delete_elem(&rg_watched_files, &file);
	else
		w->reported |= RG_REPORTED_ERR;
	return 1;
}

/* An open file's path put into s->path from the path cache: its offset, or 0 (walk). */
static __always_inline __u32 file_dpath(struct file *f)
{
	struct rg_dpath_buf *b = dpath_buf();

	if (!b)
		return 0;
	struct rg_file_fields *ff = file_fields(f, b);
	__u64 dentry = (__u64)ff->path.dentry, mnt = (__u64)ff->path.mnt;
	dentry_up((struct dentry *)dentry, &b->file_up);
	__u64 parent = (__u64)b->file_up.parent, name = (__u64)b->file_up.name;
	if (parent == dentry)
		return 0; /* a file system's root */
	return rg_dpath_fill(parent, mnt, name, b->file_up.hash_len >> 32, 0);
}

/* A write's record in s: the file written, by its path and inode. */
static __always_inline void write_record(struct rg_scratch *s, const struct rg_inflight *in,
					 long ret, __u8 fflags)
{
	struct rg_file_event *e = event_init(s, in, ret, fflags);
	struct file *f = (struct file *)in->file;
	int trunc = 0;
	__u32 off = file_dpath(f);

	if (!off)
		off = rg_walk_path(&f->f_path, &trunc);

	if (trunc)
		e->hdr.flags |= RG_HF_TRUNC_S0;
	rg_put_walked(s, off, &s->pos, &e->path);
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	struct rg_inode_key ik;

	inode_key(inode, &ik);
	e->ino = ik.ino;
	e->dev = ik.dev;
	if (persist_key(&ik, inode)) /* opened through another name of it */
		e->fflags |= RG_FF_INODE;
}

static __always_inline void report_write(const struct rg_inflight *in, long ret, __u8 fflags)
{
	struct rg_scratch *s;

	if (!write_reported(in->file, ret) || !(s = rg_scratch()))
		return;
	write_record(s, in, ret, fflags);
	event_submit(s);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(rg_file_exit_write, struct pt_regs *regs, long ret)
{
	struct rg_inflight in_copy;

	if (unstash(&in_copy))
		report_write(&in_copy, ret, 0);
	return 0;
}

/* A child inherits its parent's open files, so it inherits the write tracking too. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(rg_file_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid, one = 1;

	if (ctgid != child->pid || !bpf_map_lookup_elem(&rg_watched_procs, &ptgid))
		return 0;
	if (bpf_map_update_elem(&rg_watched_procs, &ctgid, &one, BPF_ANY))
		rg_count(&rg_table_full, RG_FAM_FILE);
	return 0;
}

/* A process gone (its last thread): nothing of it is left to write. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(rg_file_proc_gone, struct task_struct *task)
{
	__u32 tgid = task->tgid;

	if (rg_group_dead(task))
		bpf_map_delete_elem(&rg_watched_procs, &tgid);
	return 0;
}

/* ---- rename, unlink and link families: one or two names, judged on either ------------- */

/*
 * The dentry resolve.bpf.c noted (the target of a rename, link or symlink, the victim of an
 * unlink or rmdir): walked into the `path` slot (as an open's file is), the name as passed into
 * `name2` (or, for an unlink, into `name`). Returns 1 when it passes.
 */
static __always_inline int put_target(struct rg_scratch *s, struct rg_keybuf *k,
				      const struct rg_inflight *in, int unlink)
{
	struct rg_file_event *e = (void *)s->rec;
	struct path target = {
		.mnt = (struct vfsmount *)in->target_mnt,
		.dentry = (struct dentry *)in->target_dentry,
	};
	int trunc = 0;
	__u32 off = walk_to_key(s, k, &target, &trunc);

	rg_put_walked(s, off, &s->pos, &e->path);
	if (rg_put_user_str(s, (const char *)(unlink ? in->name : in->name2), &s->pos,
			    unlink ? &e->name : &e->name2))
		e->hdr.flags |= unlink ? RG_HF_TRUNC_S2 : RG_HF_TRUNC_S4;
	if (trunc) {
		e->hdr.flags |= RG_HF_TRUNC_S0;
		return 1; /* no prefix to judge: userspace reports it, marked */
	}
	return rg_key_passes(RG_V_WATCH);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(rg_file_exit_names, struct pt_regs *regs, long ret)
{
	struct rg_inflight in_copy;
	struct rg_scratch *s;
	struct rg_keybuf *k;

	if (!unstash(&in_copy))
		return 0;
	if (in_copy.dcache)
		dcache_busy(-1);
	s = rg_scratch();
	k = rg_keybuf();
	if (!s || !k)
		return 0;

	struct rg_file_event *e = event_init(s, &in_copy, ret, 0);
	int unlink = in_copy.op == RG_OP_UNLINK || in_copy.op == RG_OP_UMOUNT; /* one name */
	/*
	 * resolve.bpf.c saw the dentry: its real path, whatever symlinks the name took. A rename
	 * moves the dentry it noted only when it succeeds; an unlink's victim is the one either way.
	 */
	int resolved = in_copy.target_dentry && (ret == 0 || unlink);

	s->pass = 0;
	if (in_copy.syscall == RG_SYS_SYMLINK || in_copy.syscall == RG_SYS_SYMLINKAT ||
	    in_copy.syscall == RG_SYS_MOUNT) {
		/* link content, or what mount(2) mounts (a device, "tmpfs", or a path for a bind
		 * mount): not a name to resolve, carried raw */
		if (rg_put_user_str(s, (const char *)in_copy.name, &s->pos, &e->name))
			e->hdr.flags |= RG_HF_TRUNC_S2;
	} else if (!(resolved && unlink)) {
		s->pass = put_name(s, in_copy.dfd, (const char *)in_copy.name, &e->dir,
				   &e->name, RG_HF_TRUNC_S1, RG_HF_TRUNC_S2, RG_V_WATCH);
	}
	if (resolved) {
		if (put_target(s, k, &in_copy, unlink))
			s->pass = 1;
	} else if (in_copy.name2 && put_name(s, in_copy.dfd2,
					     (const char *)in_copy.name2, &e->dir2, &e->name2,
					     RG_HF_TRUNC_S3, RG_HF_TRUNC_S4, RG_V_WATCH)) {
		s->pass = 1;
	}
	if (!s->pass && key_above_watched(k, in_copy.op)) /* the key: the mount point */
		s->pass = 1;
	if (!s->pass)
		return filtered();
	event_submit(s);
	return 0;
}

/* source as name, target as name2: the event's path is the target */
SEC("tp_btf/sys_enter")
int BPF_PROG(rg_file_enter_names, struct pt_regs *regs, long nr)
{
	struct rg_sysinfo *si = rg_sys_lookup(nr);

	if (!si)
		return 0;
	__u8 abi = si->abi;
	__u64 a0 = rg_arg(regs, 0, abi), a1 = rg_arg(regs, 1, abi), a2 = rg_arg(regs, 2, abi);
	struct rg_inflight in = {
		.syscall = si->id, .abi = abi, .dfd = AT_FDCWD, .dfd2 = AT_FDCWD, .name = a0,
	};

	switch (si->id) {
	case RG_SYS_RENAME:
	case RG_SYS_LINK:
	case RG_SYS_SYMLINK:
		in.name2 = a1;
		break;
	case RG_SYS_RENAMEAT:
	case RG_SYS_RENAMEAT2:
	case RG_SYS_LINKAT:
		in.dfd = (int)a0;
		in.name = a1;
		in.dfd2 = (int)a2;
		in.name2 = rg_arg(regs, 3, abi);
		if (si->id != RG_SYS_RENAMEAT)
			in.flags = (__u32)rg_arg(regs, 4, abi);
		break;
	case RG_SYS_UNLINKAT:
		in.dfd = (int)a0;
		in.name = a1;
		in.flags = (__u32)a2;
		break;
	case RG_SYS_SYMLINKAT:
		in.dfd2 = (int)a1;
		in.name2 = a2;
		break;
	case RG_SYS_MOUNT: /* (source, target, type, flags, data) */
		in.name2 = a1;
		in.flags = rg_arg(regs, 3, abi);
		break;
	case RG_SYS_UMOUNT2: /* (target, flags) */
		in.flags = (__u32)a1;
		break;
	case RG_SYS_MOVE_MOUNT: /* (from_dfd, from_path, to_dfd, to_path, flags) */
		in.dfd = (int)a0;
		in.name = a1;
		in.dfd2 = (int)a2;
		in.name2 = rg_arg(regs, 3, abi);
		in.flags = (__u32)rg_arg(regs, 4, abi);
		break;
	}
	switch (si->id) {
	case RG_SYS_RENAME:
	case RG_SYS_RENAMEAT:
	case RG_SYS_RENAMEAT2:
		in.op = RG_OP_RENAME;
		break;
	case RG_SYS_UNLINK:
	case RG_SYS_UNLINKAT:
	case RG_SYS_RMDIR:
		in.op = RG_OP_UNLINK;
		in.dfd2 = 0;
		break;
	case RG_SYS_MOUNT:
	case RG_SYS_MOVE_MOUNT:
		in.op = RG_OP_MOUNT;
		break;
	case RG_SYS_UMOUNT:
	case RG_SYS_UMOUNT2:
		in.op = RG_OP_UMOUNT;
		in.dfd2 = 0;
		break;
	default:
		in.op = RG_OP_LINK;
	}
	stash_noting_moves(&in);
	return 0;
}

/* ---- attribute family: chmod, chown, truncate ------------------------------------------- */

#define AT_EMPTY_PATH 0x1000
#define S_ISUID 04000
#define S_ISGID 02000

/* Is this user (or `kern`: kernel) string "security.capability", the xattr that holds a file's
 * capabilities?
 * (Compared as words: a byte loop leaves the verifier one state per combination of bytes.) */
static __always_inline int is_file_caps(__u64 name, int kern)
{
	__u64 w[3] = {};
	long n = kern ? bpf_probe_read_kernel_str(w, sizeof(w), (const void *)name)
		      : bpf_probe_read_user_str(w, sizeof(w), (const void *)name);

	if (n != 20)
		return 0;
	/* "security", ".capabil", "ity\0", little-endian */
	return w[0] == 0x7974697275636573ULL && w[1] == 0x6c6962617061632eULL &&
	       w[2] == 0x797469;
}

/* A 16-bit id of the old i386 chown calls, as the kernel widens it (0xffff: unchanged). */
static __always_inline __u32 id16(__u64 v)
{
	__u16 id = v;
	return id == 0xffff ? 0xffffffff : id;
}

#define UTIME_NOW ((1L << 30) - 1)
#define UTIME_OMIT ((1L << 30) - 2)

/*
 * The modification time a utime-family call sets, in ns since the epoch, or RG_MTIME_*. `times`
 * points at two (seconds, fraction) pairs, the second one mtime; `wide`: 64-bit fields (else
 * i386's 32-bit ones); `unit`: ns per unit of the fraction (1 timespec, 1000 timeval, 0 a
 * utimbuf's lone seconds).
 */
static __always_inline __u64 mtime_of(__u64 times, int wide, __u32 unit)
{
	__s64 sec, frac = 0;

	if (!times)
		return RG_MTIME_NOW;
	if (wide) {
		__s64 v[2] = {};

		if (bpf_probe_read_user(v, unit ? 16 : 8, (const void *)(times + (unit ? 16 : 8))))
			return RG_MTIME_UNKNOWN;
		sec = v[0];
		frac = v[1];
	} else {
		__s32 v[2] = {};

		if (bpf_probe_read_user(v, unit ? 8 : 4, (const void *)(times + (unit ? 8 : 4))))
			return RG_MTIME_UNKNOWN;
		sec = v[0];
		frac = v[1];
	}
	if (unit == 1 && frac == UTIME_NOW)
		return RG_MTIME_NOW;
	if (unit == 1 && frac == UTIME_OMIT)
		return RG_MTIME_KEPT;
	return sec * 1000000000 + frac * unit;
}

/* "" as a user string: a call on the dirfd itself under AT_EMPTY_PATH */
static __always_inline int empty_name(__u64 flags, __u64 uname)
{
	char first = 1;

	return (flags & AT_EMPTY_PATH) && !bpf_probe_read_user(&first, 1, (const void *)uname) &&
	       !first;
}

/*
 * An attribute call's arguments, from the saved registers: in->flags gets what it sets (the
 * mode; uid << 32 | gid; the length; dev << 32 | mode; an attribute's size), in->name2 an
 * attribute's name, in->dfd and in->name the name it acts on. Returns 1 when it acts on the
 * open file in->dfd instead: an f* call, or "" with AT_EMPTY_PATH (then the dirfd itself,
 * AT_FDCWD included).
 */
static __always_inline int attr_args(const struct pt_regs *regs, const struct rg_sysinfo *si,
				     struct rg_inflight *in)
{
	__u8 abi = si->abi;
	__u64 a0 = rg_arg(regs, 0, abi), a1 = rg_arg(regs, 1, abi), a2 = rg_arg(regs, 2, abi);
	__u64 a3 = rg_arg(regs, 3, abi);
	__u16 sys = si->id;
	int on_fd = 0;

	in->syscall = sys;
	in->abi = abi;
	in->dfd = AT_FDCWD;
	in->name = a0;
	/* the *at calls: (dirfd, name, the rest), the rest moved down to where the others have it */
	switch (sys) {
	case RG_SYS_FCHMOD:
	case RG_SYS_FCHOWN:
	case RG_SYS_FCHOWN16:
	case RG_SYS_FTRUNCATE:
	case RG_SYS_FTRUNCATE64:
	case RG_SYS_FSETXATTR:
	case RG_SYS_FREMOVEXATTR:
		in->dfd = (int)a0;
		in->name = 0;
		on_fd = 1;
		break;
	case RG_SYS_FCHMODAT:
	case RG_SYS_FCHMODAT2:
	case RG_SYS_FCHOWNAT:
	case RG_SYS_MKDIRAT:
	case RG_SYS_MKNODAT:
		in->dfd = (int)a0;
		in->name = a1;
		if (sys == RG_SYS_FCHMODAT2 || sys == RG_SYS_FCHOWNAT)
			on_fd = empty_name(rg_arg(regs, sys == RG_SYS_FCHOWNAT ? 4 : 3, abi), a1);
		a1 = a2;
		a2 = a3;
		break;
	case RG_SYS_FUTIMESAT: /* (dirfd, name or NULL, times) */
	case RG_SYS_UTIMENSAT: /* (dirfd, name or NULL, times, flags) */
	case RG_SYS_UTIMENSAT_TIME64:
		in->dfd = (int)a0;
		in->name = a1;
		on_fd = !a1 || (sys != RG_SYS_FUTIMESAT && empty_name(a3, a1));
		a1 = a2;
		break;
	case RG_SYS_SETXATTRAT: /* (dirfd, name, at_flags, attribute name, args, size) */
	case RG_SYS_REMOVEXATTRAT: /* (dirfd, name, at_flags, attribute name) */
		in->dfd = (int)a0;
		in->name = a1;
		on_fd = empty_name(a2, a1);
		a1 = a3;
		a3 = 0; /* the size is in the args struct: not read */
		break;
	}
	switch (sys) {
	case RG_SYS_CHMOD:
	case RG_SYS_FCHMOD:
	case RG_SYS_FCHMODAT:
	case RG_SYS_FCHMODAT2:
		in->op = RG_OP_CHMOD;
		in->flags = a1 & 07777;
		break;
	case RG_SYS_CHOWN16:
	case RG_SYS_FCHOWN16:
	case RG_SYS_LCHOWN16:
		in->op = RG_OP_CHOWN;
		in->flags = (__u64)id16(a1) << 32 | id16(a2);
		break;
	case RG_SYS_TRUNCATE:
	case RG_SYS_FTRUNCATE:
		in->op = RG_OP_TRUNCATE;
		/* i386: a signed 32-bit length */
		in->flags = abi == RG_ABI_I386 ? (__u64)(__s64)(__s32)a1 : a1;
		break;
	case RG_SYS_TRUNCATE64:
	case RG_SYS_FTRUNCATE64:
		in->op = RG_OP_TRUNCATE;
		in->flags = a2 << 32 | (__u32)a1;
		break;
	case RG_SYS_MKDIR:
	case RG_SYS_MKDIRAT:
		in->op = RG_OP_MKDIR;
		in->flags = a1 & 07777;
		break;
	case RG_SYS_MKNOD:
	case RG_SYS_MKNODAT:
		in->op = RG_OP_MKNOD;
		in->flags = (__u64)(__u32)a2 << 32 | (__u32)a1;
		break;
	case RG_SYS_SETXATTR:
	case RG_SYS_LSETXATTR:
	case RG_SYS_FSETXATTR:
	case RG_SYS_SETXATTRAT:
		in->op = RG_OP_SETXATTR;
		in->name2 = a1;
		in->flags = a3;
		break;
	case RG_SYS_REMOVEXATTR:
	case RG_SYS_LREMOVEXATTR:
	case RG_SYS_FREMOVEXATTR:
	case RG_SYS_REMOVEXATTRAT:
		in->op = RG_OP_REMOVEXATTR;
		in->name2 = a1;
		break;
	case RG_SYS_UTIME: /* a utimbuf: seconds only */
		in->op = RG_OP_UTIMES;
		in->flags = mtime_of(a1, abi != RG_ABI_I386, 0);
		break;
	case RG_SYS_UTIMES:
	case RG_SYS_FUTIMESAT: /* timevals */
		in->op = RG_OP_UTIMES;
		in->flags = mtime_of(a1, abi != RG_ABI_I386, 1000);
		break;
	case RG_SYS_UTIMENSAT:
	case RG_SYS_UTIMENSAT_TIME64: /* timespecs */
		in->op = RG_OP_UTIMES;
		in->flags = mtime_of(a1, abi != RG_ABI_I386 || sys == RG_SYS_UTIMENSAT_TIME64, 1);
		break;
	default: /* chown, fchown, lchown, fchownat */
		in->op = RG_OP_CHOWN;
		in->flags = (__u64)(__u32)a1 << 32 | (__u32)a2;
	}
	return on_fd;
}

/*
 * An attribute call as the exit programs use it: kept in a map, not on the stack, so that the
 * verifier sees unknown values there, not the constants of the syscall they came from (one
 * set per syscall, each of which it would otherwise walk the path with).
 */
struct rg_attr_call {
	struct rg_inflight in;
	__u32 on_fd;
	__u32 force;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rg_attr_call);
} rg_attr_call_map SEC(".maps");

static __always_inline int attr_forced(const struct rg_inflight *in);

/* The current attribute call's arguments, in the CPU's slot of rg_attr_call_map. */
static __always_inline struct rg_attr_call *attr_call(const struct pt_regs *regs)
{
	struct rg_sysinfo *si = rg_sys_lookup(regs->orig_ax);
	struct rg_attr_call call = {}, *c;
	__u32 zero = 0;

	if (!si || rg_is_self())
		return NULL;
	call.on_fd = attr_args(regs, si, &call.in);
	call.force = attr_forced(&call.in);
	if (bpf_map_update_elem(&rg_attr_call_map, &zero, &call, BPF_ANY))
		return NULL;
	c = bpf_map_lookup_elem(&rg_attr_call_map, &zero);
	return c;
}

/* What resolve.bpf.c (security_path_chmod, _mkdir, ...) or rg_file_enter_attr noted for this
 * very syscall, taken out of the map whatever it is; 1 when it names this call's file. */
static __always_inline int take_noted(struct rg_inflight *noted, const struct pt_regs *regs)
{
	if (!unstash(noted))
		return 0;
	if (noted->dcache)
		dcache_busy(-1); /* left by a names call whose exit was skipped */
	if (noted->flags != regs->orig_ax)
		noted->has_old = 0; /* another call's */
	return noted->target_dentry && noted->flags == regs->orig_ax;
}

/* The value the call changed, as it was before, where it was noted. */
static __always_inline void set_old(struct rg_file_event *e, const struct rg_inflight *noted)
{
	if (noted->has_old) {
		e->old = noted->old;
		e->fflags |= RG_FF_OLD;
	}
}

/*
 * The attribute calls on an open file (fchmod, fchown, ftruncate; fchmodat2 and fchownat on ""
 * with AT_EMPTY_PATH) note what they are about to change, for the exit's `old`. (resolve.bpf.c
 * notes it for the calls on a name where it is attached; ftruncate passes no path hook since
 * 6.2.) A full table: the event goes without it.
 */
SEC("tp_btf/sys_enter")
int BPF_PROG(rg_file_enter_attr, struct pt_regs *regs, long nr)
{
	struct rg_sysinfo *si = rg_sys_lookup(nr);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct rg_inflight in = {};

	if (!si || rg_is_self() || !attr_args(regs, si, &in))
		return 0;
	const struct path *p = dir_of((void *)bpf_get_current_task(), in.dfd);

	if (!p)
		return 0;
	struct rg_inflight note = {
		.flags = nr, .has_old = 1, .old = rg_old_value(BPF_CORE_READ(p, dentry, d_inode), in.op),
	};
	bpf_map_update_elem(&rg_inflight_map, &tid, &note, BPF_ANY);
	return 0;
}

/* A setuid or setgid bit, or file capabilities: reported wherever the file is (RG_FF_FORCED
 * tells userspace's filter so). */
static __always_inline int attr_forced(const struct rg_inflight *in)
{
	return (in->op == RG_OP_CHMOD && (in->flags & (S_ISUID | S_ISGID))) ||
	       (in->op == RG_OP_SETXATTR && is_file_caps(in->name2, 0));
}

/* The attribute's name (setxattr), then out. */
static __always_inline void attr_submit(struct rg_scratch *s, const struct rg_inflight *in)
{
	struct rg_file_event *e = (void *)s->rec;

	if (in->name2 && rg_put_user_str(s, (const char *)in->name2, &s->pos, &e->name2))
		e->hdr.flags |= RG_HF_TRUNC_S4;
	event_submit(s);
}

/*
 * The attribute calls on an open file (fchmod, fchown, ftruncate, fsetxattr, and the *at calls
 * with AT_EMPTY_PATH and "", handed over by rg_file_exit_attr): judged by its real path.
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(rg_file_exit_attr_fd, struct pt_regs *regs, long ret)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct rg_attr_call *c = attr_call(regs);
	struct rg_inflight noted = {};
	struct rg_scratch *s;
	struct rg_keybuf *k;
	int trunc = 0;

	if (!c || !c->on_fd)
		return 0;
	take_noted(&noted, regs); /* fchmod and fchown pass the path hooks too */
	s = rg_scratch();
	k = rg_keybuf();
	if (!s || !k)
		return 0;

	/* the open file, or the cwd ("" with AT_FDCWD); its inode read now, not held over the walk */
	const struct path *p = dir_of(task, c->in.dfd);
	__u64 ino = 0;
	__u32 dev = 0;
	int pinned = 0;

	if (!p)
		return 0; /* not an open fd: nothing to name (the call failed with EBADF) */
	if (c->in.dfd != AT_FDCWD) {
		struct inode *inode = BPF_CORE_READ(container_of(p, struct file, f_path), f_inode);

		ino = BPF_CORE_READ(inode, i_ino);
		dev = BPF_CORE_READ(inode, i_sb, s_dev);
		pinned = persist_inode(inode);
	}
	__u32 off = walk_to_key(s, k, p, &trunc);
	if (!trunc && !c->force && !pinned && !rg_key_passes(RG_V_WATCH))
		return filtered();
	struct rg_file_event *e = event_init(s, &c->in, ret, (c->force ? RG_FF_FORCED : 0) |
					     (pinned ? RG_FF_INODE : 0));
	set_old(e, &noted);
	if (trunc)
		e->hdr.flags |= RG_HF_TRUNC_S0;
	rg_put_walked(s, off, &s->pos, &e->path);
	e->ino = ino;
	e->dev = dev;
	attr_submit(s, &c->in);
	return 0;
}

/* rg_file_exit_attr's way to rg_file_exit_attr_fd (filled by the loader) */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rg_attr_fd_prog SEC(".maps");

/*
 * The attribute calls on a name, exit-only like the opens: judged by the file the name led to
 * where resolve.bpf.c noted it, else by the name joined to its directory (as for unlink).
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(rg_file_exit_attr, struct pt_regs *regs, long ret)
{
	struct rg_attr_call *c = attr_call(regs);
	struct rg_inflight noted = {};
	struct rg_file_event *e;
	struct rg_scratch *s;
	struct rg_keybuf *k;
	int pass;

	if (!c)
		return 0;
	if (c->on_fd) {
		bpf_tail_call(ctx, &rg_attr_fd_prog, 0);
		return 0;
	}
	int resolved = take_noted(&noted, regs);

	s = rg_scratch();
	k = rg_keybuf();
	if (!s || !k)
		return 0;
	e = event_init(s, &c->in, ret, c->force ? RG_FF_FORCED : 0);
	set_old(e, &noted);
	if (resolved) {
		/* the file the name led to, through any symlink; the name as passed too */
		struct dentry *target = (struct dentry *)noted.target_dentry;
		struct inode *inode = BPF_CORE_READ(target, d_inode);

		noted.name = c->in.name;
		pass = put_target(s, k, &noted, 1);
		if (persist_inode(inode)) {
			/* a persistence file changed through another name of it */
			e->fflags |= RG_FF_INODE;
			e->ino = BPF_CORE_READ(inode, i_ino);
			e->dev = BPF_CORE_READ(inode, i_sb, s_dev);
			pass = 1;
		}
	} else {
		pass = put_name(s, c->in.dfd, (const char *)c->in.name, &e->dir, &e->name,
				RG_HF_TRUNC_S1, RG_HF_TRUNC_S2, RG_V_WATCH);
	}
	if (!pass && !c->force && !key_above_watched(k, c->in.op))
		return filtered();
	attr_submit(s, &c->in);
	return 0;
}

/* ---- io_uring: file operations that pass no syscall ----------------------------------- */

/* A process sets up a ring (reported whatever the filter says: a quiet host rarely does): the
 * directory cache goes off, as io_uring renames pass no syscall. */
SEC("tp_btf/sys_exit")
int BPF_PROG(rg_file_exit_uring_setup, struct pt_regs *regs, long ret)
{
	struct rg_sysinfo *si = rg_sys_lookup(regs->orig_ax);
	struct rg_scratch *s;
	__u32 flags = 0;

	dcache_off();
	if (!si || rg_is_self())
		return 0;
	s = rg_scratch();
	if (!s)
		return 0;
	/* (entries, struct io_uring_params *): flags after sq_entries and cq_entries */
	bpf_probe_read_user(&flags, sizeof(flags),
			    (void *)rg_arg(regs, 1, si->abi) + 2 * sizeof(__u32));
	struct rg_inflight in = {
		.syscall = si->id, .op = RG_OP_IO_URING_SETUP, .abi = si->abi, .flags = flags,
		.dfd = -1,
	};
	event_init(s, &in, ret, 0);
	event_submit(s);
	return 0;
}

/*
 * An io_uring request runs without sys_enter or sys_exit. The submit tracepoint
 * (io_uring_submit_req; io_uring_submit_sqe before 6.4) fires in the submitting task (or its
 * SQPOLL thread, which shares its files and cwd) once the request is prepared: the per-op struct
 * at offset 0 of struct io_kiocb then holds the kernel's copy of each name, freed by the time the
 * request completes. So an open or a name operation is judged and its record built at
 * submission, kept in rg_uring_pending, and sent with the result by io_uring_complete. A write
 * is judged at completion by the file written (req->file is set by then, for fixed files too),
 * like write(2): files opened for writing that passed the filter. The loader attaches these
 * programs to whichever tracepoints the kernel has (raw_tp: their arguments changed across
 * versions) and says here how to read them.
 */
/*
 * 5.15's tracepoints (Debian's 5.10 has them) give io_uring_complete no request, only (ring,
 * user_data, res, ...): a request is then known by its ring and user_data, and a write is
 * judged at submission, when its file is already assigned.
 */
const volatile __u32 rg_uring_by_data = 0;

#define IORING_OP_WRITEV 2
#define IORING_OP_WRITE_FIXED 5
#define IORING_OP_FALLOCATE 17
#define IORING_OP_OPENAT 18
#define IORING_OP_WRITE 23
#define IORING_OP_OPENAT2 28
#define IORING_OP_SPLICE 30
#define IORING_OP_RENAMEAT 35
#define IORING_OP_UNLINKAT 36
#define IORING_OP_MKDIRAT 37
#define IORING_OP_SYMLINKAT 38
#define IORING_OP_LINKAT 39
#define IORING_OP_FSETXATTR 41 /* 5.19 on */
#define IORING_OP_SETXATTR 42
#define IORING_OP_FTRUNCATE 55
#define REQ_F_FIXED_FILE (1 << 0) /* the IOSQE_* bits, mirrored in struct io_kiocb's flags */
#define REQ_F_CQE_SKIP (1 << 6)   /* IOSQE_CQE_SKIP_SUCCESS (5.17 on): no completion on success */

/*
 * The per-op structs (io_uring/openclose.c, fs.c), as far as read here; CO-RE finds the fields.
 * Each comes twice: names as `struct filename *`, and (7.2 on) as a struct delayed_filename
 * holding that pointer. 5.15 kept links in io_hardlink and io_symlink, later both in io_link.
 */
#define RG_PAI __attribute__((preserve_access_index))
struct delayed_filename___rg { struct filename *__incomplete_filename; } RG_PAI;
struct io_open___rg { int dfd; __u32 file_slot; struct filename *filename; struct open_how how; } RG_PAI;
struct io_rename___rg { int old_dfd; int new_dfd; struct filename *oldpath, *newpath; int flags; } RG_PAI;
struct io_unlink___rg { int dfd; int flags; struct filename *filename; } RG_PAI;
struct io_mkdir___rg { int dfd; umode_t mode; struct filename *filename; } RG_PAI;
struct io_link___rg { int old_dfd; int new_dfd; struct filename *oldpath, *newpath; int flags; } RG_PAI;
struct io_hardlink___rg { int old_dfd; int new_dfd; struct filename *oldpath, *newpath; int flags; } RG_PAI;
struct io_symlink___rg { int new_dfd; struct filename *oldpath, *newpath; } RG_PAI;
struct io_ftrunc___rg { loff_t len; } RG_PAI; /* 6.9 on */
/* struct xattr_ctx, kernel_xattr_ctx from 6.13: CO-RE matches a member struct by its fields */
struct xattr_ctx___rg { size_t size; struct xattr_name *kname; } RG_PAI;
struct io_xattr___rg { struct xattr_ctx___rg ctx; struct filename *filename; } RG_PAI;
struct io_open___rgd { struct delayed_filename___rg filename; } RG_PAI;
struct io_rename___rgd { struct delayed_filename___rg oldpath, newpath; } RG_PAI;
struct io_unlink___rgd { struct delayed_filename___rg filename; } RG_PAI;
struct io_mkdir___rgd { struct delayed_filename___rg filename; } RG_PAI;
struct io_link___rgd { struct delayed_filename___rg oldpath, newpath; } RG_PAI;
struct io_xattr___rgd { struct delayed_filename___rg filename; } RG_PAI;

/* The kernel string a per-op struct's name field points to. */
#define URING_NAME(op, type, field)                                                              \
	(bpf_core_type_exists(struct delayed_filename___rg) ?                                    \
		 (__u64)BPF_CORE_READ((struct type##___rgd *)(op), field.__incomplete_filename, name) : \
		 (__u64)BPF_CORE_READ((struct type##___rg *)(op), field, name))

struct rg_uring_key {
	__u64 id;   /* the request (struct io_kiocb *), or with rg_uring_by_data its ring */
	__u64 data; /* 0, or with rg_uring_by_data the request's user_data */
};

/* The record as built at submission, and what its completion needs. */
struct rg_uring_pending {
	__u8 rec[RG_REC_MAX];
	__u64 file;      /* a write judged at submission: the file */
	__u32 file_slot; /* an open into a direct descriptor (no fd to look at) */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH); /* preallocated: 5.10 allows no other in tracing */
	__uint(max_entries, 128);         /* requests in flight that passed the filter */
	__type(key, struct rg_uring_key);
	__type(value, struct rg_uring_pending);
} rg_uring_pending SEC(".maps");

/* Operations that change an open file's content: judged like write(2), by the file. */
static __always_inline int uring_is_write(__u8 opcode)
{
	return opcode == IORING_OP_WRITE || opcode == IORING_OP_WRITEV ||
	       opcode == IORING_OP_WRITE_FIXED || opcode == IORING_OP_FALLOCATE ||
	       opcode == IORING_OP_SPLICE; /* (req->file is the splice's output) */
}

/* A write's arguments as the write-family syscall it stands for would have them. */
static __always_inline void uring_write_args(__u8 opcode, struct file *f, struct rg_inflight *in)
{
	switch (opcode) {
	case IORING_OP_WRITEV: in->syscall = RG_SYS_WRITEV; break;
	case IORING_OP_FALLOCATE: in->syscall = RG_SYS_FALLOCATE; break;
	case IORING_OP_SPLICE: in->syscall = RG_SYS_SPLICE; break;
	default: in->syscall = RG_SYS_WRITE;
	}
	in->op = RG_OP_WRITE;
	in->dfd = -1; /* the ring may name it by a fixed slot: no fd */
	in->file = (__u64)f;
}

/* The open file a request works on, at submission (the ring assigns it later from 6.0 on:
 * then looked up by fd, and a fixed file has none to look up yet). */
static __always_inline struct file *uring_submit_file(struct io_kiocb *req)
{
	if (rg_uring_by_data || !bpf_core_field_exists(req->cqe))
		return BPF_CORE_READ(req, file);
	if (BPF_CORE_READ(req, flags) & REQ_F_FIXED_FILE)
		return NULL;
	return rg_fd_file(BPF_CORE_READ(req, cqe.fd));
}

/*
 * An ftruncate through the ring (6.9 on): judged by the file's path like ftruncate(2) (not only
 * when open for a tracked write), sent with the result, or at once (`now`: no result will come).
 */
static __always_inline void uring_truncate(struct io_kiocb *req, struct file *f, long res,
					   int now)
{
	struct rg_inflight in = {.abi = RG_ABI_X86_64, .syscall = RG_SYS_FTRUNCATE,
				 .op = RG_OP_TRUNCATE, .dfd = -1};
	struct rg_scratch *s = rg_scratch();
	struct rg_keybuf *k = rg_keybuf();
	int trunc = 0;

	if (!f || !s || !k || rg_is_self())
		return;
	if (bpf_core_type_exists(struct io_ftrunc___rg))
		in.flags = BPF_CORE_READ((struct io_ftrunc___rg *)req, len);
	__u32 off = walk_to_key(s, k, &f->f_path, &trunc);
	if (!trunc && !rg_key_passes(RG_V_WATCH)) {
		filtered();
		return;
	}
	struct rg_file_event *e = event_init(s, &in, res, RG_FF_IO_URING |
					     (now ? RG_FF_NO_RESULT : 0));
	if (trunc)
		e->hdr.flags |= RG_HF_TRUNC_S0;
	rg_put_walked(s, off, &s->pos, &e->path);
	event_set_inode(e, f);
	event_submit(s);
}

/* Keep the record built in s until the request completes. */
static __always_inline void uring_keep(struct rg_scratch *s, struct rg_uring_key *key,
				       __u64 file, __u32 file_slot)
{
	struct rg_file_event *e = (void *)s->rec;

	e->hdr.size = s->pos;
	/* the rest of struct rg_uring_pending, after the record */
	*(__u64 *)&s->rec[RG_REC_MAX] = file;
	*(__u32 *)&s->rec[RG_REC_MAX + 8] = file_slot;
	if (bpf_map_update_elem(&rg_uring_pending, key, s->rec, BPF_ANY))
		rg_count(&rg_table_full, RG_FAM_FILE);
}

/* A link's arguments, whichever struct holds them. */
static __always_inline void uring_link_args(void *op, int sym, struct rg_inflight *in)
{
	in->op = RG_OP_LINK;
	if (bpf_core_type_exists(struct io_link___rg)) {
		struct io_link___rg *l = op;

		in->dfd = sym ? AT_FDCWD : BPF_CORE_READ(l, old_dfd);
		in->dfd2 = BPF_CORE_READ(l, new_dfd);
		in->flags = sym ? 0 : BPF_CORE_READ(l, flags);
		in->name = URING_NAME(op, io_link, oldpath);
		in->name2 = URING_NAME(op, io_link, newpath);
	} else if (sym) {
		in->dfd = AT_FDCWD;
		in->dfd2 = BPF_CORE_READ((struct io_symlink___rg *)op, new_dfd);
		in->name = (__u64)BPF_CORE_READ((struct io_symlink___rg *)op, oldpath, name);
		in->name2 = (__u64)BPF_CORE_READ((struct io_symlink___rg *)op, newpath, name);
	} else {
		struct io_hardlink___rg *l = op;

		in->dfd = BPF_CORE_READ(l, old_dfd);
		in->dfd2 = BPF_CORE_READ(l, new_dfd);
		in->flags = BPF_CORE_READ(l, flags);
		in->name = (__u64)BPF_CORE_READ(l, oldpath, name);
		in->name2 = (__u64)BPF_CORE_READ(l, newpath, name);
	}
}

/* An xattr request's attribute (name2: the kernel's copy of its name) and its size. */
static __always_inline void uring_xattr_args(void *op, struct rg_inflight *in)
{
	struct io_xattr___rg *x = op;

	in->op = RG_OP_SETXATTR;
	in->name2 = (__u64)BPF_CORE_READ(x, ctx.kname); /* struct xattr_name: the name first */
	in->flags = BPF_CORE_READ(x, ctx.size);
}

/* A prepared request's arguments, as the syscall it stands for would have them; 0: not one
 * followed here. Names are kernel strings. */
static __always_inline int uring_args(struct io_kiocb *req, struct rg_inflight *in,
				      __u32 *file_slot)
{
	void *op = req; /* the per-op struct is at offset 0 */

	switch (BPF_CORE_READ(req, opcode)) {
	case IORING_OP_OPENAT:
	case IORING_OP_OPENAT2: {
		struct io_open___rg *o = op;

		in->syscall = BPF_CORE_READ(req, opcode) == IORING_OP_OPENAT ? RG_SYS_OPENAT
									    : RG_SYS_OPENAT2;
		in->op = RG_OP_OPEN;
		in->dfd = BPF_CORE_READ(o, dfd);
		in->flags = BPF_CORE_READ(o, how.flags);
		in->name = URING_NAME(op, io_open, filename);
		*file_slot = BPF_CORE_READ(o, file_slot);
		return 1;
	}
	case IORING_OP_RENAMEAT: {
		struct io_rename___rg *r = op;

		in->syscall = RG_SYS_RENAMEAT2;
		in->op = RG_OP_RENAME;
		in->dfd = BPF_CORE_READ(r, old_dfd);
		in->dfd2 = BPF_CORE_READ(r, new_dfd);
		in->flags = BPF_CORE_READ(r, flags);
		in->name = URING_NAME(op, io_rename, oldpath);
		in->name2 = URING_NAME(op, io_rename, newpath);
		return 1;
	}
	case IORING_OP_UNLINKAT:
		in->syscall = RG_SYS_UNLINKAT;
		in->op = RG_OP_UNLINK;
		in->dfd = BPF_CORE_READ((struct io_unlink___rg *)op, dfd);
		in->flags = BPF_CORE_READ((struct io_unlink___rg *)op, flags);
		in->name = URING_NAME(op, io_unlink, filename);
		return 1;
	case IORING_OP_MKDIRAT:
		in->syscall = RG_SYS_MKDIRAT;
		in->op = RG_OP_MKDIR;
		in->dfd = BPF_CORE_READ((struct io_mkdir___rg *)op, dfd);
		in->flags = BPF_CORE_READ((struct io_mkdir___rg *)op, mode);
		in->name = URING_NAME(op, io_mkdir, filename);
		return 1;
	case IORING_OP_SYMLINKAT:
		in->syscall = RG_SYS_SYMLINKAT;
		uring_link_args(op, 1, in);
		return 1;
	case IORING_OP_LINKAT:
		in->syscall = RG_SYS_LINKAT;
		uring_link_args(op, 0, in);
		return 1;
	case IORING_OP_SETXATTR:
		if (!bpf_core_type_exists(struct io_xattr___rg))
			return 0;
		in->syscall = RG_SYS_SETXATTR;
		in->dfd = AT_FDCWD;
		in->name = URING_NAME(op, io_xattr, filename);
		uring_xattr_args(op, in);
		return 1;
	}
	return 0;
}

/*
 * An fsetxattr through the ring (5.19 on): judged at submission, while the kernel holds its copy
 * of the attribute's name, by the file's path like fsetxattr(2) (a fixed file is not assigned
 * yet: not seen); sent with the result, or at once (`now`: no result will come).
 */
static __always_inline void uring_fsetxattr(struct io_kiocb *req, struct rg_uring_key *key,
					    int now)
{
	struct rg_inflight in = {.abi = RG_ABI_X86_64, .syscall = RG_SYS_FSETXATTR, .dfd = -1};
	struct file *f = uring_submit_file(req);
	struct rg_scratch *s = rg_scratch();
	struct rg_keybuf *k = rg_keybuf();
	int trunc = 0;

	if (!bpf_core_type_exists(struct io_xattr___rg) || !f || !s || !k)
		return;
	uring_xattr_args(req, &in);
	int forced = is_file_caps(in.name2, 1);
	__u32 off = walk_to_key(s, k, &f->f_path, &trunc);

	if (!trunc && !forced && !rg_key_passes(RG_V_WATCH)) {
		filtered();
		return;
	}
	struct rg_file_event *e = event_init(s, &in, 0, RG_FF_IO_URING |
					     (forced ? RG_FF_FORCED : 0) |
					     (now ? RG_FF_NO_RESULT : 0));
	if (trunc)
		e->hdr.flags |= RG_HF_TRUNC_S0;
	rg_put_walked(s, off, &s->pos, &e->path);
	event_set_inode(e, f);
	if (rg_put_str(s, (const char *)in.name2, &s->pos, &e->name2, 1))
		e->hdr.flags |= RG_HF_TRUNC_S4;
	if (now)
		event_submit(s);
	else
		uring_keep(s, key, 0, 0);
}

/*
 * A write judged at submission: on 5.15, whose completion has no request (its file is assigned
 * already), and a request that posts no completion on success (IOSQE_CQE_SKIP_SUCCESS: sent
 * now, as succeeded, if by fd; a fixed file has none to look at yet).
 */
static __always_inline void uring_submit_write(struct io_kiocb *req, __u8 opcode,
					       struct rg_uring_key *key, int now)
{
	struct rg_inflight in = {.abi = RG_ABI_X86_64};
	struct file *f = uring_submit_file(req);
	struct rg_scratch *s;

	if (!watched(f) || (now && !write_reported((__u64)f, 0)) || !(s = rg_scratch()))
		return;
	uring_write_args(opcode, f, &in);
	write_record(s, &in, 0, RG_FF_IO_URING | (now ? RG_FF_NO_RESULT : 0));
	if (now)
		event_submit(s);
	else
		uring_keep(s, key, in.file, 0);
}

/* A prepared write or ftruncate that is judged now (else at completion). A program of its own:
 * with the name operations' judging in one program, 5.10's and 6.1's verifiers give up. */
static __always_inline int uring_submit_content(struct io_kiocb *req, struct rg_uring_key *key)
{
	__u8 opcode = BPF_CORE_READ(req, opcode);
	int now = (BPF_CORE_READ(req, flags) & REQ_F_CQE_SKIP) != 0;

	if (rg_is_self())
		return 0;
	if (uring_is_write(opcode) && (rg_uring_by_data || now))
		uring_submit_write(req, opcode, key, now);
	else if (opcode == IORING_OP_FTRUNCATE && now)
		uring_truncate(req, uring_submit_file(req), 0, 1);
	else if (opcode == IORING_OP_FSETXATTR)
		uring_fsetxattr(req, key, now);
	return 0;
}

/* A prepared request's arguments, kept in the CPU's slot of rg_uring_call_map: read back from
 * there, they are values the verifier does not track case by case (on the stack, each operation
 * uring_args() knows would be followed through the judging separately: 5.10's and 6.1's
 * verifiers give up). */
struct rg_uring_call {
	struct rg_inflight in;
	__u32 file_slot;
	__u32 now; /* IOSQE_CQE_SKIP_SUCCESS: no completion will come on success */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rg_uring_call);
} rg_uring_call_map SEC(".maps");

static __always_inline struct rg_uring_call *uring_call(struct io_kiocb *req)
{
	struct rg_uring_call call = {.in = {.abi = RG_ABI_X86_64}};
	__u32 zero = 0;

	if (!uring_args(req, &call.in, &call.file_slot))
		return NULL;
	call.now = (BPF_CORE_READ(req, flags) & REQ_F_CQE_SKIP) != 0;
	if (bpf_map_update_elem(&rg_uring_call_map, &zero, &call, BPF_ANY))
		return NULL;
	return bpf_map_lookup_elem(&rg_uring_call_map, &zero);
}

/* A prepared open or name operation: its record is built if it passes the filter, and kept for
 * its result (or sent now, when no result will come). */
static __always_inline int uring_submit(struct io_kiocb *req, struct rg_uring_key *key)
{
	struct rg_uring_call *c;
	struct rg_scratch *s;
	struct rg_keybuf *k;

	if (rg_is_self() || !(c = uring_call(req)))
		return 0;
	if (!rg_uring_by_data)
		bpf_map_delete_elem(&rg_uring_noted, &key->id); /* left by a request before this one */
	s = rg_scratch();
	k = rg_keybuf();
	if (!s || !k)
		return 0;

	int write = c->in.op != RG_OP_OPEN || open_is_write(c->in.flags);
	struct rg_file_event *e = event_init(s, &c->in, 0, RG_FF_IO_URING |
					     (c->in.op == RG_OP_OPEN && write ? RG_FF_WRITE : 0));

	if (c->in.syscall == RG_SYS_SYMLINKAT) {
		/* link content: not a name to resolve, carried raw */
		if (rg_put_str(s, (const char *)c->in.name, &s->pos, &e->name, 1))
			e->hdr.flags |= RG_HF_TRUNC_S2;
		s->pass = 0;
	} else {
		s->pass = put_name_from(s, c->in.dfd, (const char *)c->in.name, &e->dir,
					&e->name, RG_HF_TRUNC_S1, RG_HF_TRUNC_S2,
					write ? RG_V_WATCH : RG_V_READ, 1);
	}
	if (c->in.op == RG_OP_SETXATTR) {
		/* an attribute's name, not a path; file capabilities pass wherever the file is */
		if (rg_put_str(s, (const char *)c->in.name2, &s->pos, &e->name2, 1))
			e->hdr.flags |= RG_HF_TRUNC_S4;
		if (is_file_caps(c->in.name2, 1)) {
			e->fflags |= RG_FF_FORCED;
			s->pass = 1;
		}
	} else if (c->in.name2 && put_name_from(s, c->in.dfd2, (const char *)c->in.name2,
						&e->dir2, &e->name2, RG_HF_TRUNC_S3, RG_HF_TRUNC_S4,
						RG_V_WATCH, 1)) {
		s->pass = 1;
	}
	/* a new directory above watched paths is passed too */
	if (!s->pass && !key_above_watched(k, c->in.op))
		return filtered();
	if (c->now) {
		e->fflags |= RG_FF_NO_RESULT; /* (an open's fd and inode are not known yet) */
		event_submit(s);
	} else {
		uring_keep(s, key, 0, c->file_slot);
	}
	return 0;
}

/* io_uring_submit_req (6.4 on), io_uring_submit_sqe (6.1 to 6.3): (req, ...) */
SEC("raw_tp")
int BPF_PROG(rg_uring_submit)
{
	struct io_kiocb *req = (void *)ctx[0];
	struct rg_uring_key key = {.id = (__u64)req};

	return uring_submit(req, &key);
}

SEC("raw_tp")
int BPF_PROG(rg_uring_submit_content)
{
	struct io_kiocb *req = (void *)ctx[0];
	struct rg_uring_key key = {.id = (__u64)req};

	return uring_submit_content(req, &key);
}

/* io_uring_submit_sqe on 5.15 (and Debian's 5.10): (ctx, req, opcode, user_data, ...) */
static __always_inline struct io_kiocb *uring_sqe_req(unsigned long long *ctx,
						      struct rg_uring_key *key)
{
	key->id = rg_uring_by_data ? ctx[0] : ctx[1];
	key->data = rg_uring_by_data ? ctx[3] : 0;
	return (void *)ctx[1];
}

SEC("raw_tp")
int BPF_PROG(rg_uring_submit_sqe)
{
	struct rg_uring_key key;
	struct io_kiocb *req = uring_sqe_req(ctx, &key);

	return uring_submit(req, &key);
}

SEC("raw_tp")
int BPF_PROG(rg_uring_submit_sqe_content)
{
	struct rg_uring_key key;
	struct io_kiocb *req = uring_sqe_req(ctx, &key);

	return uring_submit_content(req, &key);
}

/* A request kept by rg_uring_submit, completed: its record goes out with the result. */
static __always_inline void uring_finish(struct rg_uring_pending *p, long res)
{
	struct rg_file_event *e = (void *)p->rec;

	if (p->file && !write_reported(p->file, res))
		return;
	e->ret = res;
	e->hdr.ts_ns = bpf_ktime_get_ns();
	if (p->file_slot)
		e->fflags |= RG_FF_DIRECT;
	else if (e->op == RG_OP_OPEN && res >= 0) {
		/* the new fd is in the submitter's table (io workers share it) */
		struct file *f = rg_fd_file(res);

		if (f) {
			event_set_inode(e, f);
			if (BPF_CORE_READ(f, f_mode) & FMODE_CREATED)
				e->fflags |= RG_FF_CREATED;
			if (e->fflags & RG_FF_WRITE)
				watch_file(f, BPF_CORE_READ(f, f_path.dentry));
		}
	}
	rg_submit(p->rec, e->hdr.size, RG_FAM_FILE);
}

/* Send the record kept for this request, if any; 1 when there was one. */
static __always_inline int uring_complete(struct rg_uring_key *key, long res)
{
	struct rg_uring_pending *p = bpf_map_lookup_elem(&rg_uring_pending, key);

	if (!p)
		return 0;
	uring_finish(p, res);
	bpf_map_delete_elem(&rg_uring_pending, key);
	return 1;
}

/* Is this an operation the io_uring programs follow? (The others complete untouched.) */
static __always_inline int uring_is_file_op(__u8 opcode)
{
	switch (opcode) {
	case IORING_OP_OPENAT:
	case IORING_OP_OPENAT2:
	case IORING_OP_RENAMEAT:
	case IORING_OP_UNLINKAT:
	case IORING_OP_MKDIRAT:
	case IORING_OP_SYMLINKAT:
	case IORING_OP_LINKAT:
	case IORING_OP_FSETXATTR:
	case IORING_OP_SETXATTR:
	case IORING_OP_FTRUNCATE:
		return 1;
	}
	return uring_is_write(opcode);
}

/* A completion's result: io_uring_complete's (ctx, req, ...) */
static __always_inline long uring_res(unsigned long long *ctx, struct io_kiocb *req)
{
	if (bpf_core_field_exists(req->cqe))
		return BPF_CORE_READ(req, cqe.res);
	return (int)ctx[3]; /* 5.15: (ctx, req, user_data, res, cflags) */
}

/* A name operation: resolve.bpf.c may have noted its target. */
static __always_inline int uring_is_name_op(__u8 opcode)
{
	return opcode == IORING_OP_RENAMEAT || opcode == IORING_OP_UNLINKAT ||
	       opcode == IORING_OP_MKDIRAT || opcode == IORING_OP_SYMLINKAT ||
	       opcode == IORING_OP_LINKAT;
}

/* rg_uring_complete's ways to rg_uring_complete_open and _names (filled by the loader) */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rg_uring_open_prog SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rg_uring_names_prog SEC(".maps");

/* io_uring_complete: (ctx, req, ...) */
SEC("raw_tp")
int BPF_PROG(rg_uring_complete)
{
	struct io_kiocb *req = (void *)ctx[1];
	struct rg_uring_key key = {.id = (__u64)req};
	struct rg_inflight in = {.abi = RG_ABI_X86_64};
	__u8 opcode = BPF_CORE_READ(req, opcode);
	long res;

	if (!uring_is_file_op(opcode))
		return 0;
	res = uring_res(ctx, req);
	int kept = uring_complete(&key, res);

	if (uring_is_name_op(opcode)) {
		if (!kept && !rg_is_self())
			bpf_tail_call(ctx, &rg_uring_names_prog, 0);
		bpf_map_delete_elem(&rg_uring_noted, &key.id);
		return 0;
	}
	if (kept || rg_is_self())
		return 0;
	if ((opcode == IORING_OP_OPENAT || opcode == IORING_OP_OPENAT2) && res >= 0) {
		bpf_tail_call(ctx, &rg_uring_open_prog, 0);
		return 0;
	}

	struct file *f = BPF_CORE_READ(req, file);

	if (opcode == IORING_OP_FTRUNCATE) {
		uring_truncate(req, f, res, 0);
		return 0;
	}
	if (!uring_is_write(opcode) || !watched(f))
		return 0;
	uring_write_args(opcode, f, &in);
	report_write(&in, res, RG_FF_IO_URING);
	return 0;
}

/*
 * A successful open whose name did not pass at submission (rg_uring_complete tail-calls here):
 * judged now by the file it opened, as open(2) is at sys_exit, so that a name through a symlink
 * (or /proc/self/fd/N) to a watched file is seen. The name is freed by now: reported with the
 * kernel's path only. (Its submission was counted as filtered already.)
 */
SEC("raw_tp")
int BPF_PROG(rg_uring_complete_open)
{
	struct io_kiocb *req = (void *)ctx[1];
	struct io_open___rg *o = (void *)req;
	long res = uring_res(ctx, req);
	struct rg_scratch *s = rg_scratch();
	struct rg_keybuf *k = rg_keybuf();
	int trunc = 0;

	/* into a direct descriptor (a slot, or IORING_FILE_INDEX_ALLOC's): res is no fd */
	if (BPF_CORE_READ(o, file_slot) || !s || !k)
		return 0;
	struct file *f = rg_fd_file(res);
	if (!f)
		return 0;
	struct rg_inflight in = {
		.abi = RG_ABI_X86_64, .op = RG_OP_OPEN, .dfd = BPF_CORE_READ(o, dfd),
		.flags = BPF_CORE_READ(o, how.flags),
		.syscall = BPF_CORE_READ(req, opcode) == IORING_OP_OPENAT ? RG_SYS_OPENAT
									   : RG_SYS_OPENAT2,
	};
	int write = open_is_write(in.flags);
	/* another name of a persistence file, as for open(2) */
	int pinned = write && persist_inode(BPF_CORE_READ(f, f_inode));
	__u32 off = walk_to_key(s, k, &f->f_path, &trunc);

	if (!trunc && !pinned && !rg_key_passes(write ? RG_V_WATCH : RG_V_READ))
		return 0;
	struct rg_file_event *e = event_init(s, &in, res, RG_FF_IO_URING |
					     (write ? RG_FF_WRITE : 0) |
					     (pinned ? RG_FF_INODE : 0));
	if (trunc)
		e->hdr.flags |= RG_HF_TRUNC_S0;
	rg_put_walked(s, off, &s->pos, &e->path);
	if (BPF_CORE_READ(f, f_mode) & FMODE_CREATED)
		e->fflags |= RG_FF_CREATED;
	event_set_inode(e, f);
	if (write)
		watch_file(f, BPF_CORE_READ(f, f_path.dentry));
	event_submit(s);
	return 0;
}

/*
 * A name operation its names as written did not pass (rg_uring_complete tail-calls here): judged
 * by the target resolve.bpf.c noted from inside its handler (6.1 on, where fentry works), as the
 * syscall is at sys_exit: a rename, link, symlink or mkdir through a symlink to a watched
 * directory is seen. The names are freed by now: reported with the kernel's path only. A rename
 * or link moved or made the dentry only if it succeeded; an unlink's victim, and a mkdir's new
 * name, are the ones either way.
 */
SEC("raw_tp")
int BPF_PROG(rg_uring_complete_names)
{
	struct io_kiocb *req = (void *)ctx[1];
	__u64 id = (__u64)req;
	struct rg_uring_target *t = bpf_map_lookup_elem(&rg_uring_noted, &id);
	struct rg_inflight in = {.abi = RG_ABI_X86_64};
	long res = uring_res(ctx, req);
	struct rg_scratch *s;
	struct rg_keybuf *k;
	__u32 slot = 0;

	if (!t)
		return 0;
	in.target_dentry = t->dentry;
	in.target_mnt = t->mnt;
	bpf_map_delete_elem(&rg_uring_noted, &id);
	if (!uring_args(req, &in, &slot))
		return 0;
	/* one name: what an unlink removes, what a mkdir makes (reported failed or not) */
	int one = in.op == RG_OP_UNLINK || in.op == RG_OP_MKDIR;

	in.name = in.name2 = 0; /* freed */
	s = rg_scratch();
	k = rg_keybuf();
	if ((res < 0 && !one) || !s || !k)
		return 0;
	event_init(s, &in, res, RG_FF_IO_URING);
	if (!put_target(s, k, &in, one) && !key_above_watched(k, in.op))
		return 0;
	event_submit(s);
	return 0;
}

/* io_uring_complete on 5.15 (and Debian's 5.10): (ctx, user_data, res, cflags) */
SEC("raw_tp")
int BPF_PROG(rg_uring_complete_data)
{
	struct rg_uring_key key = {.id = ctx[0], .data = ctx[1]};

	uring_complete(&key, (int)ctx[2]);
	return 0;
}

/*
 * Path-changing calls that no event hook takes (mounts; renames and rmdir when their hooks are
 * off), followed for the directory cache only. A process that sets up an io_uring turns the
 * cache off: io_uring renames run without a syscall.
 */
SEC("tp_btf/sys_enter")
int BPF_PROG(rg_file_enter_moves, struct pt_regs *regs, long nr)
{
	struct rg_sysinfo *si = rg_sys_lookup(nr);

	if (!si)
		return 0;
	if (si->id == RG_SYS_IO_URING_SETUP) {
		dcache_off();
		return 0;
	}
	struct rg_inflight in = {.syscall = si->id};
	if (si->id == RG_SYS_UNLINKAT)
		in.flags = (__u32)rg_arg(regs, 2, si->abi);
	if (moves_dirs(in.syscall, in.flags))
		stash_noting_moves(&in);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(rg_file_exit_moves, struct pt_regs *regs, long ret)
{
	struct rg_inflight in;

	if (unstash(&in) && in.dcache)
		dcache_busy(-1);
	return 0;
}
