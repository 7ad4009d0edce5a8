import VeilSASL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A point in time to the second, written as RFC 3339 in UTC (`2026-11-30T21:00:00Z`): the
/// form grant expiries take in configuration files and governance catalogs.
///
/// Kept to whole seconds since the Unix epoch so that checking a grant costs one
/// `clock_gettime` and an integer comparison, with no calendar work on the fetch path.
public struct UTCTimestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Seconds since 1970-01-01T00:00:00Z.
    public let secondsSinceEpoch: Int64

    /// Wraps a count of seconds since the epoch.
    public init(secondsSinceEpoch: Int64) { self.secondsSinceEpoch = secondsSinceEpoch }

    /// The current wall-clock time.
    public static func now() -> UTCTimestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UTCTimestamp(secondsSinceEpoch: Int64(spec.tv_sec))
    }

    /// Parses `YYYY-MM-DDTHH:MM:SSZ` (a `T` or a space between date and time; `Z` or `+00:00`).
    /// Other offsets are refused rather than converted, so every expiry in a file reads the same way.
    public init?(parsing text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count == 20 || bytes.count == 25 else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for i in range {
                let b = bytes[i]
                guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(b - UInt8(ascii: "0"))
            }
            return value
        }
        guard bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
            bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: " "),
            bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
            let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        let zone = String(decoding: bytes[19...], as: UTF8.self)
        guard zone == "Z" || zone == "+00:00" else { return nil }
        guard (1...12).contains(month), day >= 1, day <= Self.daysIn(month: month, year: year),
            hour < 24, minute < 60, second < 60
        else { return nil }
        let days = CivilDate.days(year: Int64(year), month: Int64(month), day: Int64(day))
        self.secondsSinceEpoch = days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
    }

    public static func < (a: UTCTimestamp, b: UTCTimestamp) -> Bool { a.secondsSinceEpoch < b.secondsSinceEpoch }

    /// This time plus `seconds`.
    public func adding(seconds: Int64) -> UTCTimestamp { UTCTimestamp(secondsSinceEpoch: secondsSinceEpoch + seconds) }

    /// RFC 3339 in UTC, e.g. `2026-11-30T21:00:00Z`.
    public var description: String {
        let days = secondsSinceEpoch >= 0 ? secondsSinceEpoch / 86_400 : (secondsSinceEpoch - 86_399) / 86_400
        let rest = secondsSinceEpoch - days * 86_400
        let (y, m, d) = CivilDate.from(days: days)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let year = String(y)
        let padded = String(repeating: "0", count: max(0, 4 - year.count)) + year
        return "\(padded)-\(two(m))-\(two(d))T\(two(rest / 3600)):\(two(rest / 60 % 60)):\(two(rest % 60))Z"
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}
