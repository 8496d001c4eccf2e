//! JSON Schemas of the `gateway.v1` messages, derived from the compiled descriptor set at run
//! time, so the OpenAPI document describes exactly the JSON mapping the API speaks and cannot
//! drift from the .proto files. The .proto comments become descriptions.
//!
//! The mapping is pbjson's (proto3 JSON with the .proto field names): 64-bit integers are strings,
//! enums are their names, maps are objects, default values are omitted (so nothing is
//! `required`), and unknown fields are refused (`additionalProperties: false`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type as FieldType};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet, SourceCodeInfo};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::RefBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};

/// Every message of the schema: its JSON Schema and the messages it refers to directly.
struct Catalog {
    messages: BTreeMap<String, (Schema, BTreeSet<String>)>,
}

/// Field numbers of the descriptor paths in `SourceCodeInfo` (descriptor.proto).
const FILE_MESSAGES: i32 = 4;
const FILE_ENUMS: i32 = 5;
const MESSAGE_FIELDS: i32 = 2;
const MESSAGE_NESTED: i32 = 3;
const MESSAGE_ENUMS: i32 = 4;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        // Compiled into the binary by gateway-proto's build script; decoding it cannot fail
        // unless the build is broken, and then an empty catalog shows in the document.
        let set =
            FileDescriptorSet::decode(gateway_proto::v1::FILE_DESCRIPTOR_SET).unwrap_or_default();
        build(&set)
    })
}

/// The schema of message `name` (`gateway.v1.Upstream`), with `$ref`s to the messages it uses.
pub fn schema(name: &str) -> RefOr<Schema> {
    match catalog().messages.get(name) {
        Some((schema, _)) => RefOr::T(schema.clone()),
        None => RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .description(Some(format!("unknown message {name}")))
                .build(),
        )),
    }
}

/// Adds the schemas of every message `name` refers to, directly or not, to `out`.
pub fn dependencies(name: &str, out: &mut Vec<(String, RefOr<Schema>)>) {
    let mut seen = BTreeSet::new();
    let mut stack = vec![name.to_owned()];
    while let Some(next) = stack.pop() {
        let Some((_, uses)) = catalog().messages.get(&next) else {
            continue;
        };
        for used in uses {
            if seen.insert(used.clone()) {
                out.push((used.clone(), schema(used)));
                stack.push(used.clone());
            }
        }
    }
}

fn build(set: &FileDescriptorSet) -> Catalog {
    let mut enums: HashMap<String, (Vec<String>, Option<String>)> = HashMap::new();
    let mut messages: Vec<(String, &DescriptorProto, Vec<i32>, Option<&SourceCodeInfo>)> =
        Vec::new();
    for file in &set.file {
        let package = file.package();
        let info = file.source_code_info.as_ref();
        for (i, e) in file.enum_type.iter().enumerate() {
            let path = vec![FILE_ENUMS, index(i)];
            enums.insert(
                format!("{package}.{}", e.name()),
                enum_values(e, comment(info, &path)),
            );
        }
        for (i, m) in file.message_type.iter().enumerate() {
            collect(
                &format!("{package}.{}", m.name()),
                m,
                vec![FILE_MESSAGES, index(i)],
                info,
                &mut messages,
                &mut enums,
            );
        }
    }
    let map_entries: HashMap<String, &DescriptorProto> = messages
        .iter()
        .filter(|(_, m, _, _)| m.options.as_ref().is_some_and(|o| o.map_entry()))
        .map(|(name, m, _, _)| (name.clone(), *m))
        .collect();
    let mut catalog = Catalog {
        messages: BTreeMap::new(),
    };
    for (name, message, path, info) in &messages {
        if map_entries.contains_key(name) {
            continue;
        }
        let mut uses = BTreeSet::new();
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(comment(*info, path))
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
        for (i, field) in message.field.iter().enumerate() {
            let mut field_path = path.clone();
            field_path.extend([MESSAGE_FIELDS, index(i)]);
            let mut description = comment(*info, &field_path);
            if let Some(oneof) = field.oneof_index.filter(|_| !field.proto3_optional()) {
                let group = message
                    .oneof_decl
                    .get(usize::try_from(oneof).unwrap_or(usize::MAX))
                    .map(|o| o.name())
                    .unwrap_or_default();
                let note = format!("One of `{group}`: set at most one of its fields.");
                description = Some(match description {
                    Some(text) => format!("{text}\n\n{note}"),
                    None => note,
                });
            }
            let schema = field_schema(field, &map_entries, &enums, &mut uses, description);
            object = object.property(field.name(), schema);
        }
        catalog
            .messages
            .insert(name.clone(), (Schema::Object(object.build()), uses));
    }
    catalog
}

/// Records a message and its nested messages and enums under their full names.
fn collect<'a>(
    name: &str,
    message: &'a DescriptorProto,
    path: Vec<i32>,
    info: Option<&'a SourceCodeInfo>,
    out: &mut Vec<(
        String,
        &'a DescriptorProto,
        Vec<i32>,
        Option<&'a SourceCodeInfo>,
    )>,
    enums: &mut HashMap<String, (Vec<String>, Option<String>)>,
) {
    for (i, e) in message.enum_type.iter().enumerate() {
        let mut enum_path = path.clone();
        enum_path.extend([MESSAGE_ENUMS, index(i)]);
        enums.insert(
            format!("{name}.{}", e.name()),
            enum_values(e, comment(info, &enum_path)),
        );
    }
    for (i, nested) in message.nested_type.iter().enumerate() {
        let mut nested_path = path.clone();
        nested_path.extend([MESSAGE_NESTED, index(i)]);
        collect(
            &format!("{name}.{}", nested.name()),
            nested,
            nested_path,
            info,
            out,
            enums,
        );
    }
    out.push((name.to_owned(), message, path, info));
}

fn enum_values(e: &EnumDescriptorProto, comment: Option<String>) -> (Vec<String>, Option<String>) {
    (
        e.value.iter().map(|v| v.name().to_owned()).collect(),
        comment,
    )
}

fn field_schema(
    field: &prost_types::FieldDescriptorProto,
    map_entries: &HashMap<String, &DescriptorProto>,
    enums: &HashMap<String, (Vec<String>, Option<String>)>,
    uses: &mut BTreeSet<String>,
    description: Option<String>,
) -> RefOr<Schema> {
    let type_name = field.type_name().trim_start_matches('.');
    if field.label() == Label::Repeated {
        if let Some(entry) = map_entries.get(type_name) {
            // A map: an object whose values have the entry's `value` type.
            let value = entry
                .field
                .iter()
                .find(|f| f.number() == 2)
                .map(|f| single(f, enums, uses, None))
                .unwrap_or_else(|| RefOr::T(Schema::Object(ObjectBuilder::new().build())));
            return RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(value))
                    .description(description)
                    .build(),
            ));
        }
        let items = single(field, enums, uses, None);
        return RefOr::T(Schema::Array(
            ArrayBuilder::new()
                .items(items)
                .description(description)
                .build(),
        ));
    }
    single(field, enums, uses, description)
}

/// The schema of one value of the field's type.
fn single(
    field: &prost_types::FieldDescriptorProto,
    enums: &HashMap<String, (Vec<String>, Option<String>)>,
    uses: &mut BTreeSet<String>,
    description: Option<String>,
) -> RefOr<Schema> {
    let scalar = |kind: Type, format: Option<SchemaFormat>| {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(kind)
                .format(format)
                .description(description.clone())
                .build(),
        ))
    };
    match field.r#type() {
        FieldType::String => scalar(Type::String, None),
        FieldType::Bool => scalar(Type::Boolean, None),
        FieldType::Int32 | FieldType::Sint32 | FieldType::Sfixed32 => {
            scalar(Type::Integer, Some(known(KnownFormat::Int32)))
        }
        FieldType::Uint32 | FieldType::Fixed32 => scalar(Type::Integer, Some(custom("uint32"))),
        // proto3 JSON writes 64-bit integers as decimal strings (and reads numbers too).
        FieldType::Int64 | FieldType::Sint64 | FieldType::Sfixed64 => {
            scalar(Type::String, Some(known(KnownFormat::Int64)))
        }
        FieldType::Uint64 | FieldType::Fixed64 => scalar(Type::String, Some(custom("uint64"))),
        FieldType::Double => scalar(Type::Number, Some(known(KnownFormat::Double))),
        FieldType::Float => scalar(Type::Number, Some(known(KnownFormat::Float))),
        FieldType::Bytes => scalar(Type::String, Some(known(KnownFormat::Byte))),
        FieldType::Enum => {
            let name = field.type_name().trim_start_matches('.');
            let (values, comment) = enums.get(name).cloned().unwrap_or_default();
            let description = match (description, comment) {
                (Some(field), _) => Some(field),
                (None, comment) => comment,
            };
            RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(values))
                    .description(description)
                    .build(),
            ))
        }
        FieldType::Message | FieldType::Group => {
            let name = field.type_name().trim_start_matches('.').to_owned();
            uses.insert(name.clone());
            RefOr::Ref(
                RefBuilder::new()
                    .ref_location_from_schema_name(name)
                    .description(description)
                    .build(),
            )
        }
    }
}

fn known(format: KnownFormat) -> SchemaFormat {
    SchemaFormat::KnownFormat(format)
}

fn custom(format: &str) -> SchemaFormat {
    SchemaFormat::Custom(format.to_owned())
}

/// The leading comment of the element at `path`, trimmed.
fn comment(info: Option<&SourceCodeInfo>, path: &[i32]) -> Option<String> {
    let location = info?.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn index(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(name: &str) -> serde_json::Value {
        serde_json::to_value(schema(name)).unwrap()
    }

    #[test]
    fn messages_follow_the_json_mapping() {
        let upstream = json("gateway.v1.Upstream");
        let properties = &upstream["properties"];
        assert_eq!(properties["name"]["type"], "string");
        assert_eq!(properties["targets"]["type"], "array");
        assert_eq!(
            properties["targets"]["items"]["$ref"],
            "#/components/schemas/gateway.v1.Target"
        );
        assert_eq!(properties["labels"]["type"], "object");
        assert_eq!(
            properties["labels"]["additionalProperties"]["type"],
            "string"
        );
        assert_eq!(
            properties["load_balancing"]["enum"][1],
            "LOAD_BALANCING_POLICY_ROUND_ROBIN"
        );
        assert_eq!(upstream["additionalProperties"], false);
        assert!(
            upstream["description"]
                .as_str()
                .is_some_and(|d| d.contains("targets")),
            "comments become descriptions: {upstream}"
        );
        let version = json("gateway.v1.ConfigVersion");
        assert_eq!(
            version["properties"]["version"]["type"], "string",
            "uint64 is a string"
        );

        let mut deps = Vec::new();
        dependencies("gateway.v1.Config", &mut deps);
        let names: BTreeSet<&str> = deps.iter().map(|(n, _)| n.as_str()).collect();
        for needed in [
            "gateway.v1.Upstream",
            "gateway.v1.Target",
            "gateway.v1.RouteMatch",
        ] {
            assert!(names.contains(needed), "{names:?}");
        }
    }
}
