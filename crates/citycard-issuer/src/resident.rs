//! Resident input: one resident as JSON, many as CSV or JSON Lines, validated
//! before any card is touched.
//!
//! Accepted fields: `resident_id` (required: the office's own file reference,
//! never a national identity number), `name` (required), `birth_date`
//! (YYYY-MM-DD), `address` and/or `care_of_address` (at least one),
//! `language`, `gender` (optional, absent by default), `issuer_24`…`issuer_31`
//! (hex). The card number is assigned by the registry; `resident` is set by
//! the issuer. Fields for nationality, document type or status are refused by
//! name, with a message saying why: citycard does not hold them anywhere.

use std::collections::BTreeMap;
use std::path::Path;

use citycard_proto::attr::{AttributeId, AttributeKind};
use citycard_proto::date::Date;

/// Field names refused with an explanation rather than "unknown field".
pub const FORBIDDEN_FIELDS: &[&str] = &[
    "nationality",
    "citizenship",
    "country_of_birth",
    "place_of_birth",
    "document_type",
    "document_number",
    "id_document",
    "passport",
    "passport_number",
    "permit",
    "residence_permit",
    "visa",
    "immigration_status",
    "legal_status",
    "administrative_status",
    "status",
    "asylum",
    "ethnicity",
    "religion",
];

/// A validated resident, ready for personalisation.
#[derive(Clone, PartialEq, Eq)]
pub struct Resident {
    /// The office's file reference for this person (used to enforce one live card).
    pub resident_id: String,
    /// Stored attributes for the card, ascending ids (includes `resident` = yes).
    pub attributes: Vec<(AttributeId, Vec<u8>)>,
}

impl std::fmt::Debug for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print personal attributes.
        f.debug_struct("Resident")
            .field(
                "attributes",
                &self
                    .attributes
                    .iter()
                    .map(|(id, _)| id.name())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The earliest birth date accepted: anything before is a typing mistake
/// (the oldest person alive was born after it).
pub const EARLIEST_BIRTH_DATE: &str = "1900-01-01";

/// The rule for birth dates, as error messages state it.
pub const BIRTH_DATE_RULE: &str =
    "a birth date must be a real day from 1900-01-01 to today (YYYY-MM-DD); the value is not repeated here";

/// Why an input record was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{field}: {reason}", .row.map(|r| format!("line {r}: ")).unwrap_or_default(), .resident_id.as_ref().map(|r| format!("resident {r}: ")).unwrap_or_default())]
pub struct InputError {
    /// The line of the batch file (1-based, the header is line 1 of a CSV
    /// file), if from a batch file.
    pub row: Option<u64>,
    /// The row's `resident_id`, if it has a well-formed one.
    pub resident_id: Option<String>,
    /// The field concerned (or `record` for the whole row).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn err(field: &str, reason: impl Into<String>) -> InputError {
    InputError {
        row: None,
        resident_id: None,
        field: field.into(),
        reason: reason.into(),
    }
}

/// The `resident_id` of a record, if it has a well-formed one (to name the
/// row in reports even when another field is refused).
pub fn resident_id_of(fields: &BTreeMap<String, String>) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("resident_id"))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
}

/// Validates one resident given as field → text, with birth dates checked
/// against today's date (UTC, from the system clock).
pub fn validate(fields: &BTreeMap<String, String>) -> Result<Resident, InputError> {
    let today = crate::home::now().ok().map(|(d, _)| d);
    validate_on(fields, today)
}

/// Whether `text` is shaped like `YYYY-MM-DD` with a year before 1900 (a
/// date the protocol cannot even encode, but one to name precisely).
fn before_1900(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && text
            .get(..4)
            .and_then(|y| y.parse::<u16>().ok())
            .is_some_and(|y| y < 1900)
}

/// Validates one resident given as field → text; `today` bounds birth dates.
pub fn validate_on(
    fields: &BTreeMap<String, String>,
    today: Option<Date>,
) -> Result<Resident, InputError> {
    let with_id = |mut e: InputError| {
        e.resident_id = resident_id_of(fields);
        e
    };
    validate_fields(fields, today).map_err(with_id)
}

fn validate_fields(
    fields: &BTreeMap<String, String>,
    today: Option<Date>,
) -> Result<Resident, InputError> {
    let mut resident_id = None;
    let mut attributes: Vec<(AttributeId, Vec<u8>)> = Vec::new();
    for (key, raw) in fields {
        let key_norm = key.trim().to_ascii_lowercase();
        let value = raw.trim();
        if FORBIDDEN_FIELDS.contains(&key_norm.as_str()) {
            return Err(err(
                key,
                "not accepted: citycard never records nationality, documents or administrative status, on the card or anywhere else",
            ));
        }
        if value.is_empty() {
            // Empty CSV cells mean "absent".
            continue;
        }
        if key_norm == "resident_id" {
            if value.len() > 64 || !value.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err(
                    key,
                    "must be 1-64 printable ASCII characters (the office's file reference)",
                ));
            }
            resident_id = Some(value.to_string());
            continue;
        }
        let id = AttributeId::from_name(&key_norm).map_err(|_| err(key, "unknown field"))?;
        if id.kind() != AttributeKind::Stored
            || id == AttributeId::CARD_NUMBER
            || id == AttributeId::RESIDENT
        {
            return Err(err(
                key,
                "set by the issuer or computed by the card; not an input field",
            ));
        }
        let bytes = match id {
            AttributeId::BIRTH_DATE => {
                let date = Date::parse_iso(value).map_err(|_| err(key, BIRTH_DATE_RULE))?;
                if before_1900(value)
                    || date < Date::parse_iso(EARLIEST_BIRTH_DATE).unwrap_or(date)
                    || today.is_some_and(|t| date > t)
                {
                    return Err(err(key, BIRTH_DATE_RULE));
                }
                date.to_bytes().to_vec()
            }
            id if id.get() >= AttributeId::ISSUER_DEFINED_FIRST => {
                hex::decode(value).map_err(|_| err(key, "issuer-defined values are hex"))?
            }
            _ => value.as_bytes().to_vec(),
        };
        id.validate_value(&bytes).map_err(|e| {
            let limit = match id {
                AttributeId::NAME => " (1-64 bytes of UTF-8, the card's limit)",
                AttributeId::ADDRESS | AttributeId::CARE_OF_ADDRESS => {
                    " (1-96 bytes of UTF-8, the card's limit)"
                }
                AttributeId::LANGUAGE => " (an ISO 639 code such as fr, nl, en)",
                AttributeId::GENDER => " (1-16 bytes of UTF-8)",
                _ => "",
            };
            err(key, format!("{e}{limit}"))
        })?;
        attributes.push((id, bytes));
    }
    let resident_id = resident_id.ok_or_else(|| err("resident_id", "missing"))?;
    if !attributes.iter().any(|(id, _)| *id == AttributeId::NAME) {
        return Err(err("name", "missing"));
    }
    if !attributes
        .iter()
        .any(|(id, _)| *id == AttributeId::ADDRESS || *id == AttributeId::CARE_OF_ADDRESS)
    {
        return Err(err("address", "missing (give address or care_of_address)"));
    }
    attributes.push((AttributeId::RESIDENT, vec![1]));
    attributes.sort_by_key(|(id, _)| *id);
    Ok(Resident {
        resident_id,
        attributes,
    })
}

fn json_object_to_fields(v: &serde_json::Value) -> Result<BTreeMap<String, String>, InputError> {
    let obj = v
        .as_object()
        .ok_or_else(|| err("record", "must be a JSON object"))?;
    let mut fields = BTreeMap::new();
    for (k, v) in obj {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => continue,
            _ => return Err(err(k, "must be a string")),
        };
        fields.insert(k.clone(), text);
    }
    Ok(fields)
}

/// Parses and validates one resident from a JSON file.
pub fn from_json_file(path: &Path) -> Result<Resident, InputError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err("file", format!("{}: {e}", path.display())))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err("file", format!("not valid JSON: {e}")))?;
    validate(&json_object_to_fields(&v)?)
}

/// One row of a batch file: its number and the validated resident, or why it was refused.
pub type BatchRow = (u64, Result<Resident, InputError>);

/// The field separator of a CSV header line: `;` (the default of
/// spreadsheets in Belgium and France, among others) when the line has more
/// semicolons than commas outside quotes, `,` otherwise.
pub fn detect_delimiter(header_line: &str) -> u8 {
    let (mut commas, mut semicolons, mut quoted) = (0usize, 0usize, false);
    for c in header_line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => commas += 1,
            ';' if !quoted => semicolons += 1,
            _ => {}
        }
    }
    if semicolons > commas {
        b';'
    } else {
        b','
    }
}

/// Reads a batch file (`.csv` with a header row, `,` or `;` separated, or
/// `.jsonl`), validating each row independently: a bad row is reported with
/// its file line number (and its `resident_id`, when it has one), the others
/// go on. Fails as a whole only if the file cannot be read or has no valid
/// header.
pub fn read_batch(path: &Path) -> Result<Vec<BatchRow>, InputError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = std::fs::read_to_string(path)
        .map_err(|e| err("file", format!("{}: {e}", path.display())))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let today = crate::home::now().ok().map(|(d, _)| d);
    let mut rows = Vec::new();
    let numbered = |row: u64, e: InputError| InputError {
        row: Some(row),
        ..e
    };
    match ext.as_str() {
        "csv" => {
            let delimiter = detect_delimiter(text.lines().next().unwrap_or(""));
            let mut reader = csv::ReaderBuilder::new()
                .flexible(false)
                .delimiter(delimiter)
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| err("header", e.to_string()))?
                .clone();
            if headers.is_empty() {
                return Err(err("header", "empty header row"));
            }
            let mut record = csv::StringRecord::new();
            loop {
                let read = reader.read_record(&mut record);
                let line = record.position().map_or(0, csv::Position::line);
                match read {
                    Ok(false) => break,
                    Ok(true) => {
                        let fields: BTreeMap<String, String> = headers
                            .iter()
                            .zip(record.iter())
                            .map(|(h, v)| (h.to_string(), v.to_string()))
                            .collect();
                        rows.push((
                            line,
                            validate_on(&fields, today).map_err(|e| numbered(line, e)),
                        ));
                    }
                    Err(e) => {
                        let line = e.position().map_or(line, csv::Position::line);
                        rows.push((line, Err(numbered(line, err("record", e.to_string())))));
                        if !matches!(
                            e.kind(),
                            csv::ErrorKind::UnequalLengths { .. } | csv::ErrorKind::Utf8 { .. }
                        ) {
                            break;
                        }
                    }
                }
            }
        }
        "jsonl" | "ndjson" => {
            for (i, line) in text.lines().enumerate() {
                let row = i as u64 + 1;
                if line.trim().is_empty() {
                    continue;
                }
                let result = serde_json::from_str::<serde_json::Value>(line)
                    .map_err(|e| err("record", format!("not valid JSON: {e}")))
                    .and_then(|v| json_object_to_fields(&v))
                    .and_then(|f| validate_on(&f, today));
                rows.push((row, result.map_err(|e| numbered(row, e))));
            }
        }
        _ => {
            return Err(err(
                "file",
                "batch files are .csv (with a header row) or .jsonl",
            ))
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_valid_resident_gets_the_resident_attribute() {
        let r = validate(&fields(&[
            ("resident_id", "F-1"),
            ("name", "Alex"),
            ("care_of_address", "Asbl Accueil, 4000 Liège"),
            ("birth_date", "2001-02-03"),
        ]))
        .unwrap();
        let ids: Vec<_> = r.attributes.iter().map(|(id, _)| id.name()).collect();
        assert_eq!(ids, ["name", "birth_date", "care_of_address", "resident"]);
        assert!(!format!("{r:?}").contains("Alex"));
    }

    #[test]
    fn each_bad_field_has_its_own_message() {
        let base = [
            ("resident_id", "F-1"),
            ("name", "Alex"),
            ("address", "Rue 1"),
        ];
        let bad = |extra: (&str, &str)| {
            let mut f = fields(&base);
            f.insert(extra.0.into(), extra.1.into());
            validate(&f).unwrap_err()
        };
        assert!(bad(("birth_date", "2001-02-30"))
            .reason
            .contains("from 1900-01-01 to today"));
        for implausible in ["1899-12-31", "2090-01-01", "9999-12-31"] {
            let e = bad(("birth_date", implausible));
            assert_eq!(e.reason, BIRTH_DATE_RULE, "{implausible}");
            assert_eq!(e.resident_id.as_deref(), Some("F-1"));
        }
        let today = crate::home::now().unwrap().0;
        let tomorrow = today.add_days(1).to_string();
        assert_eq!(bad(("birth_date", &tomorrow)).reason, BIRTH_DATE_RULE);
        let mut f = fields(&base);
        f.insert("birth_date".into(), today.to_string());
        assert!(validate(&f).is_ok(), "born today is plausible");
        f.insert("birth_date".into(), "1900-01-01".into());
        assert!(validate(&f).is_ok());
        assert!(bad(("name", &"x".repeat(65)))
            .reason
            .contains("card's limit"));
        assert_eq!(bad(("favourite_colour", "blue")).reason, "unknown field");
        assert!(bad(("nationality", "BE"))
            .reason
            .contains("never records nationality"));
        assert!(bad(("Document_Type", "passport"))
            .reason
            .contains("never records"));
        assert!(bad(("card_number", "X"))
            .reason
            .contains("set by the issuer"));
        assert!(
            validate(&fields(&[("resident_id", "F-1"), ("address", "Rue 1")]))
                .unwrap_err()
                .field
                == "name"
        );
        assert!(
            validate(&fields(&[("resident_id", "F-1"), ("name", "A")]))
                .unwrap_err()
                .field
                == "address"
        );
        assert!(
            validate(&fields(&[("name", "A"), ("address", "B")]))
                .unwrap_err()
                .field
                == "resident_id"
        );
    }

    #[test]
    fn batch_rows_are_numbered_and_independent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.csv");
        std::fs::write(&p, "resident_id,name,address,birth_date\nA,Ann,Rue 1,1990-01-01\nB,,Rue 2,\nC,Cy,Rue 3,1990-13-01\nD,Di,Rue 4,\n").unwrap();
        let rows = read_batch(&p).unwrap();
        assert_eq!(rows.len(), 4);
        assert!(rows[0].1.is_ok() && rows[3].1.is_ok());
        assert_eq!(
            rows[1].1.as_ref().unwrap_err().row,
            Some(3),
            "file line numbers"
        );
        assert_eq!(rows[0].0, 2);
        assert!(rows[2]
            .1
            .as_ref()
            .unwrap_err()
            .to_string()
            .starts_with("line 4: resident C: birth_date"));
        // Excel's default in Belgium and France: semicolons.
        let p = dir.path().join("semi.csv");
        std::fs::write(&p, "resident_id;name;address;birth_date\nA;Ann;Rue 1, 4000 Liège;1990-01-01\nB;\"Bo; Jr\";Rue 2;\n").unwrap();
        let rows = read_batch(&p).unwrap();
        assert!(rows.iter().all(|(_, r)| r.is_ok()), "{rows:?}");
        assert_eq!(detect_delimiter("a,b;c,d"), b',');
        let p = dir.path().join("b.jsonl");
        std::fs::write(&p, "{\"resident_id\":\"A\",\"name\":\"Ann\",\"address\":\"R\"}\nnot json\n{\"resident_id\":\"B\",\"name\":\"B\",\"address\":\"R\",\"nationality\":\"X\"}\n").unwrap();
        let rows = read_batch(&p).unwrap();
        assert!(rows[0].1.is_ok());
        assert_eq!(
            rows[2].1.as_ref().unwrap_err().resident_id.as_deref(),
            Some("B")
        );
        assert!(rows[1]
            .1
            .as_ref()
            .unwrap_err()
            .reason
            .contains("not valid JSON"));
        assert!(rows[2]
            .1
            .as_ref()
            .unwrap_err()
            .reason
            .contains("never records"));
        assert!(read_batch(&dir.path().join("x.txt")).is_err());
    }
}
