// ConvolutionProduct: the matrix product of a convolution's forward pass, on swiftcam's own
// kernel when the layer's weights are packed for it (PackedGemm.swift), else on OpenBLAS.

/// One group's `C (Cout/g, n) = W (Cout/g, Cin/g*kh*kw) · B (Cin/g*kh*kw, n)` for a convolution.
struct ConvolutionProduct {
    let weight: UnsafePointer<Float>  // (Cout, Cin / groups * kh * kw)
    let packedWeight: PackedWeights?
    let shape: Conv2dShape
    let scratch: UnsafeMutableBufferPointer<Float>  // PackedGemm's, when packed

    /// Whether `multiply` runs on the packed kernel and so applies the epilogue itself; when
    /// false the caller runs the bias / shortcut / ReLU pass (convolutionEpilogue).
    var appliesEpilogue: Bool { packedWeight != nil && scratch.count >= PackedGemm.scratchPerPart }

    /// Group `group`'s product into C (rows `ldc` apart) from B (rows `ldb` apart); the epilogue
    /// only when `appliesEpilogue`.
    func multiply(
        group: Int, n: Int, b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
        epilogue: GemmEpilogue = GemmEpilogue()
    ) {
        if appliesEpilogue, let packedWeight {
            packedGemm(weights: packedWeight, group: group, n: n, b: b, ldb: ldb, c: c, ldc: ldc,
                       epilogue: epilogue, scratch: scratch)
            return
        }
        let rows = shape.outChannels / shape.groups
        parallelSgemm(
            transposeA: false, m: rows, n: n, k: shape.columnRows,
            a: weight + group * rows * shape.columnRows, lda: shape.columnRows,
            b: b, ldb: ldb, beta: 0, c: c, ldc: ldc)
    }
}
