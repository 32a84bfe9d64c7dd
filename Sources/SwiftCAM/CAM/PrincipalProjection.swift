// PrincipalProjection: the projection of a (C, h, w) tensor onto its first principal component,
// as pytorch-grad-cam's get_2d_projection (EigenCAM, EigenGradCAM, eigen_smooth): the positions are
// samples, the channels features; centre each channel, take the first right singular vector v of
// X (hw, C), and return X v as an (h, w) map. Computed in Double through LAPACK's dsyevd on the
// smaller Gram matrix (X Xᵀ or Xᵀ X).
//
// Sign rule: a singular vector's sign is arbitrary (it differs between LAPACK builds). swiftcam
// chooses the sign that makes the projection correlate positively with the channel mean of the
// uncentred input, so the map highlights where the tensor is large. Compare with the reference
// up to sign.

import COpenBLAS

enum PrincipalProjection {
    /// Writes the (h, w) projection of `tensor` (C, h, w) into `output`. NaNs count as 0.
    static func project(_ tensor: UnsafePointer<Float>, channels: Int, plane: Int, into output: UnsafeMutablePointer<Float>) throws(SwiftCAMError) {
        // X (plane, C), centred per channel, in Double.
        var x = [Double](repeating: 0, count: plane * channels)
        var meanMap = [Double](repeating: 0, count: plane)
        for c in 0..<channels {
            var mean: Double = 0
            for p in 0..<plane {
                let value = tensor[c * plane + p]
                let v = value.isNaN ? 0 : Double(value)
                x[p * channels + c] = v
                mean += v
                meanMap[p] += v
            }
            mean /= Double(plane)
            for p in 0..<plane { x[p * channels + c] -= mean }
        }
        var projection = [Double](repeating: 0, count: plane)
        if plane <= channels {
            // X Xᵀ = U Σ² Uᵀ: the projection X v1 is σ1 u1.
            let gram = gramMatrix(x, rows: plane, columns: channels, transposeFirst: false)
            if let (value, vector) = try topEigenpair(gram, size: plane) {
                let sigma = max(value, 0).squareRoot()
                for p in 0..<plane { projection[p] = sigma * vector[p] }
            }
        } else {
            // Xᵀ X = V Σ² Vᵀ: the projection is X v1.
            let gram = gramMatrix(x, rows: plane, columns: channels, transposeFirst: true)
            if let (_, vector) = try topEigenpair(gram, size: channels) {
                for p in 0..<plane {
                    var total: Double = 0
                    for c in 0..<channels { total += x[p * channels + c] * vector[c] }
                    projection[p] = total
                }
            }
        }
        var correlation: Double = 0
        for p in 0..<plane { correlation += projection[p] * meanMap[p] }
        let sign: Double = correlation < 0 ? -1 : 1
        for p in 0..<plane { output[p] = Float(sign * projection[p]) }
    }

    /// X Xᵀ (rows x rows) or, with transposeFirst, Xᵀ X (columns x columns), for X (rows, columns).
    private static func gramMatrix(_ x: [Double], rows: Int, columns: Int, transposeFirst: Bool) -> [Double] {
        let size = transposeFirst ? columns : rows
        var gram = [Double](repeating: 0, count: size * size)
        x.withUnsafeBufferPointer { xs in
            gram.withUnsafeMutableBufferPointer { out in
                if transposeFirst {
                    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(columns), Int32(columns), Int32(rows),
                                1, xs.baseAddress, Int32(columns), xs.baseAddress, Int32(columns), 0, out.baseAddress, Int32(columns))
                } else {
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(rows), Int32(columns),
                                1, xs.baseAddress, Int32(columns), xs.baseAddress, Int32(columns), 0, out.baseAddress, Int32(rows))
                }
            }
        }
        return gram
    }

    /// The largest eigenvalue of a symmetric matrix and its unit eigenvector; nil for size 0.
    private static func topEigenpair(_ matrix: [Double], size: Int) throws(SwiftCAMError) -> (Double, [Double])? {
        guard size > 0 else { return nil }
        var a = matrix
        var eigenvalues = [Double](repeating: 0, count: size)
        var n = Int32(size)
        var lda = n
        var info: Int32 = 0
        var jobz = CChar(UInt8(ascii: "V"))
        var uplo = CChar(UInt8(ascii: "U"))
        // Workspace query, then the decomposition.
        var workQuery: Double = 0
        var iworkQuery: Int32 = 0
        var lwork: Int32 = -1
        var liwork: Int32 = -1
        dsyevd_(&jobz, &uplo, &n, &a, &lda, &eigenvalues, &workQuery, &lwork, &iworkQuery, &liwork, &info)
        guard info == 0 else { throw .invalidArgument("eigen-decomposition workspace query failed (info \(info))") }
        lwork = Int32(workQuery)
        liwork = iworkQuery
        var work = [Double](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        dsyevd_(&jobz, &uplo, &n, &a, &lda, &eigenvalues, &work, &lwork, &iwork, &liwork, &info)
        guard info == 0 else { throw .invalidArgument("eigen-decomposition did not converge (info \(info))") }
        // Eigenvalues ascend; column-major storage: the last column is the top eigenvector.
        let top = size - 1
        return (eigenvalues[top], Array(a[(top * size)..<(top * size + size)]))
    }
}
