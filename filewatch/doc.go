// Package filewatch tells the broker when a file it reads (a client secret,
// a password, a certificate, a private key) has changed, so that a rotated
// secret is used at once, with no signal and no restart.
//
// # Why it polls
//
// It polls rather than using inotify. Kubernetes updates a mounted secret by
// an atomic symlink swap: secret/password is a symlink to ..data/password,
// ..data is a symlink to a timestamped directory, and the kubelet writes a
// new directory and renames a new ..data symlink over the old one. A watch on
// the file follows the old inode, which is never written, only unlinked, so
// it misses the change. A file replaced by renaming a temporary file over it
// loses its watch the same way, and on network filesystems inotify sees
// nothing at all. Polling a handful of paths costs a few stat calls a second
// and handles all of these, and in-place rewrites, alike.
//
// # What counts as a change
//
// A path has changed when, following its symlinks, its device and inode,
// size, modification time or file type differ from the previous poll, or when
// the path its symlinks resolve to differs (a swap to a new target is seen
// even if the target's inode happens to match). File timestamps may be
// coarse (one second, two on FAT), so an in-place rewrite of the same size
// within one tick leaves all of those unchanged: while a file's modification
// time is too close to when it was looked at to rule that out, its contents
// are hashed (SHA-256 of at most the first MiB, never kept or logged) and
// compared as well. A path that disappears counts as changed once, and again
// when it comes back.
//
// A change may be reported although the bytes are the same (a file replaced
// by an identical copy, or touched); the broker reads the file again, which
// is harmless. What it must never do is miss a rotation.
package filewatch
