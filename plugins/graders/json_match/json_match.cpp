// json_match — the answer must be JSON (a ```json fence around it is allowed). It scores
//   0 when it does not parse, or fails `schema` (a JSON Schema subset: type, properties,
//     required, enum, items, additionalProperties = false, minimum, maximum);
//   else the share of the reference object's fields (or of `fields`) whose values equal
//     the answer's (partial credit); 1 when there is no reference object to compare.
// The reference is the dataset's reference text parsed as JSON.
#include <fthost/plugin.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace {

using fthost::option;
using nlohmann::json;

const ft_option kOptions[] = {
    option("schema", FT_OPT_STRING, "\"\"", "JSON Schema (subset) the answer must satisfy, as a JSON string"),
    option("fields", FT_OPT_STRING_LIST, "[]", "the fields compared with the reference (default: all of its fields)"),
};

bool has_type(const json& v, const std::string& t) {
    if (t == "object") return v.is_object();
    if (t == "array") return v.is_array();
    if (t == "string") return v.is_string();
    if (t == "number") return v.is_number();
    if (t == "integer") return v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
    if (t == "boolean") return v.is_boolean();
    if (t == "null") return v.is_null();
    return false;
}

// Why `v` fails `schema` at `path`, or "" when it conforms.
std::string violation(const json& v, const json& schema, const std::string& path) {
    if (!schema.is_object()) return "";
    if (schema.contains("type")) {
        const auto& t = schema["type"];
        bool ok = false;
        if (t.is_string()) ok = has_type(v, t.get<std::string>());
        else if (t.is_array())
            for (const auto& x : t) ok = ok || (x.is_string() && has_type(v, x.get<std::string>()));
        if (!ok) return path + ": expected type " + t.dump();
    }
    if (schema.contains("enum") && schema["enum"].is_array() &&
        std::find(schema["enum"].begin(), schema["enum"].end(), v) == schema["enum"].end())
        return path + ": not one of " + schema["enum"].dump();
    if (v.is_number()) {
        if (schema.contains("minimum") && v.get<double>() < schema["minimum"].get<double>()) return path + ": below minimum";
        if (schema.contains("maximum") && v.get<double>() > schema["maximum"].get<double>()) return path + ": above maximum";
    }
    if (v.is_object()) {
        if (schema.contains("required"))
            for (const auto& k : schema["required"])
                if (k.is_string() && !v.contains(k.get<std::string>())) return path + ": missing '" + k.get<std::string>() + "'";
        const json props = schema.value("properties", json::object());
        for (const auto& [k, sub] : v.items()) {
            if (props.contains(k)) {
                if (auto why = violation(sub, props[k], path + "." + k); !why.empty()) return why;
            } else if (schema.contains("additionalProperties") && schema["additionalProperties"] == false) {
                return path + ": unexpected field '" + k + "'";
            }
        }
    }
    if (v.is_array() && schema.contains("items"))
        for (size_t i = 0; i < v.size(); ++i)
            if (auto why = violation(v[i], schema["items"], path + "[" + std::to_string(i) + "]"); !why.empty()) return why;
    return "";
}

// The JSON inside an answer: the whole text, or the body of a ``` fence.
std::string strip_fence(const std::string& s) {
    const auto open = s.find("```");
    if (open == std::string::npos) return s;
    const auto body = s.find('\n', open);
    const auto close = s.find("```", body == std::string::npos ? open + 3 : body);
    if (body == std::string::npos || close == std::string::npos) return s;
    return s.substr(body + 1, close - body - 1);
}

class JsonMatch {
public:
    JsonMatch(const fthost::Host&, const fthost::Config& cfg) : fields_(cfg.get_string_list("fields")) {
        if (!cfg.get_string("schema").empty()) schema_ = json::parse(cfg.get_string("schema"));
    }

    static void validate(const fthost::Config& cfg) {
        const std::string s = cfg.get_string("schema");
        if (s.empty()) return;
        try {
            if (!json::parse(s).is_object()) cfg.fail("schema", "must be a JSON object");
        } catch (const json::parse_error& e) {
            cfg.fail("schema", std::string("is not valid JSON: ") + e.what());
        }
    }

    double grade(const ft_grade_item& item, std::string& reason) const {
        json answer;
        try {
            answer = json::parse(strip_fence(item.completion ? item.completion : ""));
        } catch (const json::parse_error&) {
            reason = "answer is not JSON";
            return 0.0;
        }
        if (!schema_.is_null())
            if (auto why = violation(answer, schema_, "$"); !why.empty()) {
                reason = why.substr(0, 100);
                return 0.0;
            }
        json ref;
        try {
            ref = item.reference ? json::parse(item.reference) : json();
        } catch (const json::parse_error&) {
            ref = json();
        }
        if (!ref.is_object()) {
            reason = "valid JSON";
            return 1.0;  // nothing to compare field by field: validity is the score
        }
        std::vector<std::string> keys = fields_;
        if (keys.empty())
            for (const auto& [k, _] : ref.items()) keys.push_back(k);
        if (keys.empty()) return 1.0;
        int same = 0;
        for (const auto& k : keys) same += answer.is_object() && answer.contains(k) && ref.contains(k) && answer[k] == ref[k];
        reason = std::to_string(same) + "/" + std::to_string(keys.size()) + " fields match";
        return static_cast<double>(same) / static_cast<double>(keys.size());
    }

private:
    std::vector<std::string> fields_;
    json schema_;
};

}  // namespace

FTHOST_GRADER(json_match, JsonMatch, "json_match", "0.1.0",
              "the answer parses as JSON, fits a schema, and matches the reference field by field", kOptions,
              FT_PLUGIN_THREAD_SAFE);
FTHOST_PLUGINS(json_match)
