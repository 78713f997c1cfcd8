package registry

// SetBeforeRekeyWrite makes Rekey call f before each of its writes, as if
// another broker wrote in between; the returned func undoes it.
func SetBeforeRekeyWrite(f func(name string)) (undo func()) {
	beforeRekeyWrite = f
	return func() { beforeRekeyWrite = nil }
}
