// PixelMed's DicomSRValidator on several files in one JVM: its start and the compilation of its
// templates cost about ten seconds, each further file about two. Run as a single-file source program
// (java -cp pixelmed.jar ValidateMany.java FILE...); each file's findings follow a "=== FILE" line,
// as DicomSRValidator itself prints them for one file.
import com.pixelmed.validate.DicomSRValidator;

public class ValidateMany {
    public static void main(String[] args) throws Exception {
        DicomSRValidator validator = new DicomSRValidator();
        for (String file : args) {
            System.out.println("=== " + file);
            System.out.print(validator.validate(file));
            System.out.println();
        }
    }
}
