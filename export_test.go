package tokenbroker

// DecodeFastForTest exposes the fast decoder to the differential fuzz test.
var DecodeFastForTest = decodeFast
