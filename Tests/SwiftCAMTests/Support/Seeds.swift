// Seeds: d(score)/d(logits) for the targets the fixtures use (class logit, argmax, softmax
// probability), computed here independently of the Python package's targets.

import XCTest
@testable import SwiftCAM

enum Seeds {
    /// (N, 1, classes) seeds for a fixture entry's `targets` ({"kind": "class" | "softmax" | "none",
    /// "classes": [...]}).
    static func forTargets(_ targets: JSONValue?, logits: [Float], numClasses: Int) -> [Float] {
        let classes = ints(targets?["classes"])
        switch targets?["kind"] {
        case .string("softmax")?: return softmax(classes: classes, logits: logits, numClasses: numClasses)
        case .string("none")?: return oneHot(classes: argmax(logits: logits, numClasses: numClasses), numClasses: numClasses)
        default: return oneHot(classes: classes, numClasses: numClasses)
        }
    }

    /// (N, 1, classes) one-hot seeds for one class per image.
    static func oneHot(classes: [Int], numClasses: Int) -> [Float] {
        var seeds = [Float](repeating: 0, count: classes.count * numClasses)
        for (image, c) in classes.enumerated() { seeds[image * numClasses + c] = 1 }
        return seeds
    }

    static func argmax(logits: [Float], numClasses: Int) -> [Int] {
        stride(from: 0, to: logits.count, by: numClasses).map { start in
            let row = logits[start..<start + numClasses]
            return row.indices.max { row[$0] < row[$1] }! - start
        }
    }

    /// (N, 1, classes): gradient of softmax(logits)[c] = p_c (e_c - p), in Double.
    static func softmax(classes: [Int], logits: [Float], numClasses: Int) -> [Float] {
        var seeds = [Float](repeating: 0, count: classes.count * numClasses)
        for (image, c) in classes.enumerated() {
            let row = (0..<numClasses).map { Double(logits[image * numClasses + $0]) }
            let top = row.max()!
            let exps = row.map { Foundation.exp($0 - top) }
            let total = exps.reduce(0, +)
            let p = exps.map { $0 / total }
            for j in 0..<numClasses { seeds[image * numClasses + j] = Float(p[c] * ((j == c ? 1 : 0) - p[j])) }
        }
        return seeds
    }
}

import Foundation
