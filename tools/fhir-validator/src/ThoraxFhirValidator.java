import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.UnknownCodeSystemWarningValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

/**
 * Thorax: validates FHIR R4 JSON resources against the official R4 structure definitions, value
 * sets and invariants that hapi-fhir-validation-resources-r4 carries, with no terminology server
 * and no network. Code systems the bundled resources do not hold (SNOMED CT, LOINC) cannot be
 * checked offline; their codes are reported as warnings, never silently accepted.
 *
 * Usage: java -cp 'libs/*:classes' ThoraxFhirValidator FILE... (or "-" for one resource on stdin)
 * Prints one JSON line per input: {"file":…,"valid":bool,"issues":[{"severity","location","message"}]}
 * Exit status: 0 when no input has an error or fatal issue, 1 when one has, 2 when an input
 * cannot be read.
 */
public final class ThoraxFhirValidator {
  private ThoraxFhirValidator() {}

  public static void main(String[] args) {
    if (args.length == 0) {
      System.err.println("usage: ThoraxFhirValidator FILE... | -");
      System.exit(2);
    }
    FhirContext context = FhirContext.forR4();
    UnknownCodeSystemWarningValidationSupport unknownCodeSystems = new UnknownCodeSystemWarningValidationSupport(context);
    // SNOMED CT and LOINC are not in the bundled resources: say so as a warning, do not fail.
    unknownCodeSystems.setNonExistentCodeSystemSeverity(IValidationSupport.IssueSeverity.WARNING);
    ValidationSupportChain chain = new ValidationSupportChain(
        new DefaultProfileValidationSupport(context),
        new CommonCodeSystemsTerminologyService(context),
        new InMemoryTerminologyServerValidationSupport(context),
        new SnapshotGeneratingValidationSupport(context),
        unknownCodeSystems);
    FhirInstanceValidator instanceValidator = new FhirInstanceValidator(chain);
    FhirValidator validator = context.newValidator().registerValidatorModule(instanceValidator);

    boolean anyInvalid = false;
    for (String arg : args) {
      String text;
      try {
        text = arg.equals("-") ? readAll(System.in) : Files.readString(Path.of(arg), StandardCharsets.UTF_8);
      } catch (IOException e) {
        System.err.println("cannot read " + arg + ": " + e.getMessage());
        System.exit(2);
        return;
      }
      ValidationResult result = validator.validateWithResult(text);
      List<String> issues = new ArrayList<>();
      boolean valid = true;
      for (SingleValidationMessage message : result.getMessages()) {
        ResultSeverityEnum severity = message.getSeverity();
        if (severity == ResultSeverityEnum.ERROR || severity == ResultSeverityEnum.FATAL) valid = false;
        issues.add("{\"severity\":" + quote(severity.getCode())
            + ",\"location\":" + quote(message.getLocationString())
            + ",\"message\":" + quote(message.getMessage()) + "}");
      }
      anyInvalid |= !valid;
      System.out.println("{\"file\":" + quote(arg) + ",\"valid\":" + valid + ",\"issues\":[" + String.join(",", issues) + "]}");
    }
    System.out.flush();
    System.exit(anyInvalid ? 1 : 0);
  }

  private static String readAll(InputStream in) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    in.transferTo(out);
    return out.toString(StandardCharsets.UTF_8);
  }

  /** A JSON string literal. */
  private static String quote(String value) {
    if (value == null) return "null";
    StringBuilder out = new StringBuilder(value.length() + 2).append('"');
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        case '\n' -> out.append("\\n");
        case '\r' -> out.append("\\r");
        case '\t' -> out.append("\\t");
        default -> {
          if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
          else out.append(c);
        }
      }
    }
    return out.append('"').toString();
  }
}
